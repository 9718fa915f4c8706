package gateway

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/mcpsts/mcpsts/resource"
)

// Reload says how the resource server is built again when its tool-scope
// file changes.
type Reload struct {
	File  string                           // watched: size and modification time
	Also  []string                         // more files watched the same way (the tool policy)
	Every time.Duration                    // how often it is checked (0: 1s)
	Build func() (*resource.Server, error) // a resource server with the file's scopes
	Ready time.Duration                    // how long the new one may take to load the broker's keys (0: 10s)
}

// Run keeps the resource server in force running (its broker key set
// fresh) until ctx is done. With rl.File set, each change of the file
// builds a resource server again, runs it, and swaps it in once its keys
// are loaded, stopping the previous one; a file that does not build, or a
// server whose keys do not load, leaves the previous one in force (logged).
func (g *Gateway) Run(ctx context.Context, rl Reload) {
	runCtx, stop := context.WithCancel(ctx)
	defer func() { stop() }()
	go g.cfg.Resource.Run(runCtx)
	files := slices.DeleteFunc(append([]string{rl.File}, rl.Also...), func(f string) bool { return f == "" })
	if len(files) == 0 {
		<-ctx.Done()
		return
	}
	if rl.Every == 0 {
		rl.Every = time.Second
	}
	if rl.Ready == 0 {
		rl.Ready = 10 * time.Second
	}
	stamp := func() string {
		var all string
		for _, f := range files {
			fi, err := os.Stat(f)
			if err != nil {
				return ""
			}
			all += fmt.Sprint(fi.Size(), fi.ModTime().UnixNano(), ";")
		}
		return all
	}
	last := stamp()
	t := time.NewTicker(rl.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := stamp()
		if now == last || now == "" {
			continue
		}
		last = now
		next, err := rl.Build()
		if err != nil {
			g.log.Error("tool scopes not reloaded: the previous ones stay in force", "files", files, "error", err)
			continue
		}
		nextCtx, stopNext := context.WithCancel(ctx)
		go next.Run(nextCtx)
		if !waitReady(ctx, next, rl.Ready) {
			stopNext()
			g.log.Error("tool scopes not reloaded: the broker's keys did not load", "files", files)
			continue
		}
		g.SetResource(next)
		stop()
		stop = stopNext
		g.log.Info("tool scopes reloaded", "files", files)
	}
}

// waitReady waits, at most d, for rs to have the broker's keys.
func waitReady(ctx context.Context, rs *resource.Server, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for rs.Ready() != nil {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
