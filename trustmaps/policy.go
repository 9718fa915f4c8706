package trustmaps

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/mcpsts/mcpsts/attest"
)

// Source yields the documents that hold the maps (files, a store). It must
// be safe for concurrent use.
type Source interface {
	Documents(ctx context.Context) ([]Document, error)
}

// Policy holds the engine in force and replaces it when its source changes.
// A new version that does not compile leaves the old one in force: the
// problems are logged and counted (mcpsts.trustmaps.reload_failures). Safe
// for concurrent use.
type Policy struct {
	src      Source
	opts     Options
	log      *slog.Logger
	failures metric.Int64Counter

	engine atomic.Pointer[Engine]
	mu     sync.Mutex // serializes reloads
	digest [32]byte   // of the documents in force; under mu
}

// NewPolicy loads and compiles the source once; that first version must
// compile. meter may be nil.
func NewPolicy(ctx context.Context, src Source, log *slog.Logger, meter metric.Meter) (*Policy, error) {
	return NewPolicyWith(ctx, src, Options{}, log, meter)
}

// NewPolicyWith is NewPolicy compiling with opts.
func NewPolicyWith(ctx context.Context, src Source, opts Options, log *slog.Logger, meter metric.Meter) (*Policy, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if meter == nil {
		meter = noop.Meter{}
	}
	p := &Policy{src: src, opts: opts, log: log}
	p.failures, _ = meter.Int64Counter("mcpsts.trustmaps.reload_failures",
		metric.WithDescription("trust map versions that did not compile and were not put in force"))
	if _, err := p.Reload(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Decide decides with the engine in force.
func (p *Policy) Decide(ctx context.Context, id attest.Identity, r Request) (Decision, error) {
	return p.engine.Load().Decide(ctx, id, r)
}

// MayAct asks the engine in force whether actor may act for identities
// granted by map mapID.
func (p *Policy) MayAct(mapID string, actor attest.Identity) bool {
	return p.engine.Load().MayAct(mapID, actor)
}

// ReadsContext reports whether a map in force reads posture source name.
func (p *Policy) ReadsContext(name string) bool { return p.Engine().ReadsContext(name) }

// ReadsPlace reports whether a map in force uses geolocation.
func (p *Policy) ReadsPlace() bool { return p.Engine().ReadsPlace() }

// Place is Engine().Place.
func (p *Policy) Place(sourceIP string) (Place, bool) { return p.Engine().Place(sourceIP) }

// Options are the options the policy compiles with.
func (p *Policy) Options() Options {
	if p == nil {
		return Options{}
	}
	return p.opts
}

// Engine is the engine in force.
func (p *Policy) Engine() *Engine { return p.engine.Load() }

// Explain is Engine().Explain on the engine in force.
func (p *Policy) Explain(ctx context.Context, id attest.Identity, r Request) Trace {
	return p.Engine().Explain(ctx, id, r)
}

// Reload reads the source and, when it changed, compiles it and puts it in
// force. changed reports whether a new version went into force; on error
// the old version stays.
func (p *Policy) Reload(ctx context.Context) (changed bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	docs, err := p.src.Documents(ctx)
	if err != nil {
		return false, fmt.Errorf("trustmaps: read maps: %w", err)
	}
	h := sha256.New()
	for _, d := range docs {
		fmt.Fprintf(h, "%d:%s\x00%d:", len(d.Name), d.Name, len(d.Data))
		h.Write(d.Data)
	}
	var digest [32]byte
	h.Sum(digest[:0])
	if p.engine.Load() != nil && digest == p.digest {
		return false, nil
	}
	e, err := p.opts.Compile(docs...)
	if err != nil {
		if p.engine.Load() != nil {
			p.failures.Add(ctx, 1)
			p.log.Error("trust maps did not compile: the previous version stays in force", "error", err)
			p.digest = digest // do not retry the same broken version
		}
		return false, err
	}
	p.engine.Store(e)
	p.digest = digest
	p.log.Info("trust maps in force", "maps", e.Len())
	p.warnUnknownProviders(ctx, e)
	return true, nil
}

// warnUnknownProviders logs each map in force that names a provider not
// configured: it compiled, and never matches.
func (p *Policy) warnUnknownProviders(ctx context.Context, e *Engine) {
	if p.opts.Providers == nil {
		return
	}
	known, err := p.opts.Providers(ctx)
	if err != nil {
		p.log.Warn("trust maps: the configured providers could not be read to check the maps' names", "error", err)
		return
	}
	for _, prob := range e.UnknownProviders(known) {
		p.log.Warn("trust map never matches", "problem", prob.Error())
	}
}

// Run reloads every interval until ctx is done.
func (p *Policy) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := p.Reload(ctx); err != nil && !errors.Is(err, context.Canceled) {
				var prob *Problem
				if !errors.As(err, &prob) { // compile problems were logged by Reload
					p.log.Warn("trust maps not reloaded", "error", err)
				}
			}
		}
	}
}
