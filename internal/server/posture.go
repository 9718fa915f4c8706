package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/posture"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/internal/admin"
	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// dynamicPosture holds the posture sources of the configuration file and
// those managed through the admin API, which it reloads from the store: a
// source added there is asked from the next reload, one removed no longer.
// It is safe for concurrent use.
type dynamicPosture struct {
	storeSet[*builtSource] // Reload, Run

	fixed []builtSource
	now   func() time.Time
	log   *slog.Logger
	meter metric.Meter
	set   atomic.Pointer[posture.Set]
}

// builtSource is one source, ready for posture.New.
type builtSource struct {
	version   int64
	assertion *posture.AssertionConfig
	keys      *federation.Provider // of an assertion source
	pull      *posture.Pull
	stop      context.CancelFunc // of a store source's key refresher
}

// newPosture builds the posture sources of the configuration file; the
// store's join them at Run.
func newPosture(cfg *config.Config, repo trustmaps.Repository, now func() time.Time, log *slog.Logger, meter metric.Meter) (*dynamicPosture, error) {
	d := &dynamicPosture{now: now, log: log, meter: meter}
	d.storeSet = storeSet[*builtSource]{
		repo: repo, what: "posture source", log: log,
		version: func(b *builtSource) int64 { return b.version },
		start:   d.start,
		stop:    func(b *builtSource) { b.stop() },
		swap:    d.swap,
	}
	for i, ps := range cfg.Posture {
		b, err := buildPostureSource(ps, now, log, meter)
		if err != nil {
			return nil, fmt.Errorf("posture[%d] (%s): %w", i, ps.Name, err)
		}
		d.fixed = append(d.fixed, b)
	}
	if err := d.swap(nil); err != nil {
		return nil, err
	}
	return d, nil
}

// Keys are the key sources of the file's assertion sources, to load and
// refresh like the providers'.
func (d *dynamicPosture) Keys() []*federation.Provider {
	var out []*federation.Provider
	for _, b := range d.fixed {
		if b.keys != nil {
			out = append(out, b.keys)
		}
	}
	return out
}

// Evaluate implements exchange.PostureSources with the sources in force.
func (d *dynamicPosture) Evaluate(ctx context.Context, id attest.Identity, assertions []string, read func(string) bool) []attest.Posture {
	return d.set.Load().Evaluate(ctx, id, assertions, read)
}

func buildPostureSource(ps config.PostureSource, now func() time.Time, log *slog.Logger, meter metric.Meter) (builtSource, error) {
	if ps.Kind == "assertion" {
		p, _, err := buildProvider(ps.AssertionKeys(), []string{"unused"}, now, log, meter)
		if err != nil {
			return builtSource{}, err
		}
		return builtSource{keys: p, assertion: &posture.AssertionConfig{
			Name: ps.Name, Keys: p, Audience: ps.Audience, MaxAge: ps.MaxAge, Preset: ps.Preset,
			BindClaim: ps.Bind.Claim, BindIdentity: ps.Bind.Identity, BindProviders: ps.Bind.Providers, OnError: posture.OnError(ps.OnError),
		}}, nil
	}
	t, err := providerTransport(config.Provider{CAFile: ps.CAFile})
	if err != nil {
		return builtSource{}, err
	}
	tr := t.(*http.Transport)
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	cert := &certFiles{cert: ps.CertFile, key: ps.KeyFile}
	if _, err := cert.get(nil); err != nil {
		return builtSource{}, err
	}
	tr.TLSClientConfig.GetClientCertificate = cert.get
	timeout, maxBytes := ps.Timeout, ps.MaxBytes
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	if maxBytes == 0 {
		maxBytes = 64 << 10
	}
	p, err := posture.NewPull(posture.PullConfig{
		Name: ps.Name, URL: ps.URL, CacheTTL: ps.CacheTTL, CacheEntries: ps.CacheEntries, OnError: posture.OnError(ps.OnError),
		Fetcher: federation.NewFetcher(federation.FetcherOptions{Transport: tr, Timeout: timeout, MaxBytes: maxBytes, NoRedirects: true}),
	})
	if err != nil {
		return builtSource{}, err
	}
	return builtSource{pull: p}, nil
}

// start builds a store source and starts its key refresher.
func (d *dynamicPosture) start(run context.Context, rec trustmaps.Record) (*builtSource, error) {
	ps, err := config.ParsePostureSource("store:"+rec.ID, rec.Document)
	if err != nil {
		return nil, err
	}
	b, err := buildPostureSource(*ps, d.now, d.log, d.meter)
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(run)
	b.version, b.stop = rec.Version, stop
	if b.keys != nil {
		go b.keys.Run(runCtx)
	}
	return &b, nil
}

// swap puts the file's sources and the running store sources in force.
func (d *dynamicPosture) swap(running map[string]*builtSource) error {
	var assertions []posture.AssertionConfig
	var pulls []*posture.Pull
	add := func(b *builtSource) {
		if b.assertion != nil {
			assertions = append(assertions, *b.assertion)
		} else {
			pulls = append(pulls, b.pull)
		}
	}
	for i := range d.fixed {
		add(&d.fixed[i])
	}
	for _, id := range slices.Sorted(maps.Keys(running)) {
		add(running[id])
	}
	set, err := posture.New(d.now, assertions, pulls)
	if err != nil {
		return err
	}
	d.set.Store(set)
	return nil
}

// postureDocuments checks the posture sources written through the admin
// API by the rules of the configuration file's.
func postureDocuments(repo trustmaps.Repository, cfg *config.Config) *admin.Documents {
	return &admin.Documents{Repo: repo, Check: func(ctx context.Context, id string, doc []byte) []string {
		if doc == nil {
			return nil
		}
		ps, err := config.ParsePostureSource("posture source "+id, doc)
		if err != nil {
			return strings.Split(err.Error(), "\n")
		}
		var problems []string
		if ps.Name != id {
			problems = append(problems, fmt.Sprintf("name: %q is not the id in the path %q", ps.Name, id))
		}
		for i, f := range cfg.Posture {
			if f.Name == ps.Name {
				problems = append(problems, fmt.Sprintf("name: %q is taken by posture[%d] of the configuration file", ps.Name, i))
			}
		}
		return problems
	}}
}

// certFiles is the broker's client certificate for pulled posture, read
// again when its files change (a workload certificate is short-lived, and
// whatever renews it rewrites the files).
type certFiles struct {
	cert, key string

	mu      sync.Mutex
	current *tls.Certificate
	mod     [2]time.Time
}

func (c *certFiles) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	var mod [2]time.Time
	for i, f := range []string{c.cert, c.key} {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		mod[i] = fi.ModTime()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current != nil && mod == c.mod {
		return c.current, nil
	}
	cert, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return nil, fmt.Errorf("client certificate (cert_file, key_file): %w", err)
	}
	c.current, c.mod = &cert, mod
	return c.current, nil
}

// forwardedFor takes the source address of requests that come through a
// trusted proxy from X-Forwarded-For: the right-most address that is not a
// trusted proxy's (each proxy appends the address it got the request
// from, so what is to the left of that may be the client's own invention).
// A request from any other peer keeps its own address, whatever it sends.
// Everything after it (rate limits, conditions, the audit log) sees the
// result as the request's RemoteAddr.
func forwardedFor(trusted []netip.Prefix, next http.Handler) http.Handler {
	if len(trusted) == 0 {
		return next
	}
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		peer, perr := netip.ParseAddr(host)
		values := r.Header.Values("X-Forwarded-For")
		if err != nil || perr != nil || len(values) == 0 || !isTrusted(peer.Unmap()) {
			next.ServeHTTP(w, r)
			return
		}
		var hops []string
		for _, v := range values {
			hops = append(hops, strings.Split(v, ",")...)
		}
		client := peer.Unmap()
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // a malformed hop: trust nothing to its left
			}
			client = a.Unmap()
			if !isTrusted(client) {
				break
			}
		}
		r2 := *r
		r2.RemoteAddr = netip.AddrPortFrom(client, 0).String()
		next.ServeHTTP(w, &r2)
	})
}
