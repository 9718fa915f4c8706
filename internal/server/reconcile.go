package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/mcpsts/mcpsts/trustmaps"
)

// storeSet keeps the documents of a store repository (providers, posture
// sources) in force beside the configuration file's: at each reload a new
// or changed record is built and started, the one it replaces stopped, a
// removed one stopped, and the set is swapped in. A record that does not
// build is logged and left out; the others stay.
type storeSet[T any] struct {
	repo    trustmaps.Repository // nil: the file's only
	what    string               // in log lines: "federation provider"
	version func(T) int64
	// start builds and starts a record; what it runs in the background
	// lives in run, Run's context. put (optional) puts it in force once
	// the one it replaces is stopped.
	start func(run context.Context, rec trustmaps.Record) (T, error)
	put   func(T)
	stop  func(T)
	// swap puts the running records in force (with the file's).
	swap func(running map[string]T) error
	log  *slog.Logger

	mu      sync.Mutex // one reload at a time; guards running and run
	running map[string]T
	run     context.Context
}

// Reload reads the store and puts changes in force.
func (s *storeSet[T]) Reload(ctx context.Context) error {
	if s.repo == nil {
		return nil
	}
	recs, err := s.repo.Records(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		s.running = map[string]T{}
	}
	run := s.run
	if run == nil {
		run = context.Background()
	}
	changed := false
	seen := map[string]bool{}
	for _, rec := range recs {
		seen[rec.ID] = true
		if cur, ok := s.running[rec.ID]; ok && s.version(cur) == rec.Version {
			continue
		}
		next, err := s.start(run, rec)
		if err != nil {
			s.log.Error(s.what+" from the store not put in force", "id", rec.ID, "version", rec.Version, "error", err)
			continue
		}
		if cur, ok := s.running[rec.ID]; ok {
			s.stop(cur)
		}
		if s.put != nil {
			s.put(next)
		}
		s.running[rec.ID] = next
		s.log.Info(s.what+" from the store in force", "id", rec.ID, "version", rec.Version)
		changed = true
	}
	for id, cur := range s.running {
		if !seen[id] {
			s.stop(cur)
			delete(s.running, id)
			s.log.Info(s.what+" removed from the store: no longer in force", "id", id)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if err := s.swap(s.running); err != nil {
		s.log.Error(s.what+"s from the store not put in force", "error", err)
		return err
	}
	return nil
}

// Run reloads every interval until ctx is done.
func (s *storeSet[T]) Run(ctx context.Context, every time.Duration) {
	s.mu.Lock()
	s.run = ctx
	s.mu.Unlock()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.Reload(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn(s.what+"s: reload failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
