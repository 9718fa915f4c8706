package auditlog

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// EventRepeated sums up the refusals of one kind that an Aggregator
// counted instead of writing them one by one.
const EventRepeated = "audit.repeated"

// DecisionWriter is what an Aggregator writes to: a *Log.
type DecisionWriter interface {
	Decision(name string, at time.Time, sc trace.SpanContext, attrs []attribute.KeyValue) error
}

// The attributes that make two refusals of one event the same kind, as
// far as volume goes: who sent them, what they were told, and which check
// of which provider refused them (values of ours, a few of each).
var kindAttrs = []attribute.Key{"mcpsts.source_ip", "mcpsts.error", "mcpsts.http.status", "mcpsts.deny.check", "mcpsts.subject.provider"}

// Aggregator passes decisions through to a log, except refusals that no
// verified identity stands behind (events ending in .deny, .refuse or
// _refused, without mcpsts.subject.id): of those, only the first of each
// kind (event, source address, error, HTTP status, check, provider) in an interval is
// written in full; the others are counted, and one audit.repeated line per
// kind says how many, when the interval ends. Anyone may send junk
// requests; a flood of them then writes a bounded number of lines, while
// every decision about an identity is still written one by one.
//
// At most MaxKinds kinds are told apart in an interval; refusals of others
// are counted together (mcpsts.repeated.kinds says "many").
type Aggregator struct {
	out      DecisionWriter // nil: nothing is written, refusals are counted for the log only
	log      *slog.Logger
	interval time.Duration
	maxKinds int

	mu    sync.Mutex
	kinds map[string]*repeated
	order []string // kinds in the order first seen, for the summary lines
}

type repeated struct {
	name        string
	attrs       []attribute.KeyValue // of the kind
	count       int64                // refusals after the first
	first, last time.Time            // of those counted
}

// AggregatorOptions configures an Aggregator.
type AggregatorOptions struct {
	Interval time.Duration // default 1m
	MaxKinds int           // default 10000
	Log      *slog.Logger  // where summaries are logged too; nil: nowhere
}

// NewAggregator writes to out (which may be nil).
func NewAggregator(out DecisionWriter, o AggregatorOptions) *Aggregator {
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.MaxKinds <= 0 {
		o.MaxKinds = 10_000
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Aggregator{out: out, log: o.Log, interval: o.Interval, maxKinds: o.MaxKinds, kinds: map[string]*repeated{}}
}

// Decision implements DecisionWriter.
func (a *Aggregator) Decision(name string, at time.Time, sc trace.SpanContext, attrs []attribute.KeyValue) error {
	_, err := a.Record(name, at, sc, attrs)
	return err
}

// Record writes the decision, or counts it; written says which (a caller
// logs only what is written).
func (a *Aggregator) Record(name string, at time.Time, sc trace.SpanContext, attrs []attribute.KeyValue) (written bool, err error) {
	if refusal(name, attrs) && !a.first(name, at, attrs) {
		return false, nil
	}
	if a.out == nil {
		return true, nil
	}
	return true, a.out.Decision(name, at, sc, attrs)
}

// refusal reports a refusal no verified identity stands behind.
func refusal(name string, attrs []attribute.KeyValue) bool {
	if !strings.HasSuffix(name, ".deny") && !strings.HasSuffix(name, ".refuse") && !strings.HasSuffix(name, "_refused") {
		return false
	}
	for _, kv := range attrs {
		if kv.Key == "mcpsts.subject.id" && kv.Value.Emit() != "" {
			return false
		}
	}
	return true
}

// first reports whether this refusal is the first of its kind in the
// interval, and counts it if not.
func (a *Aggregator) first(name string, at time.Time, attrs []attribute.KeyValue) bool {
	kind := []attribute.KeyValue{attribute.String("mcpsts.repeated.event", name)}
	key := name
	for _, k := range kindAttrs {
		for _, kv := range attrs {
			if kv.Key == k {
				kind = append(kind, kv)
				key += "\x00" + string(k) + "=" + kv.Value.Emit()
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.kinds[key]; !ok && len(a.kinds) >= a.maxKinds {
		key = "\x00many\x00" + name
		kind = []attribute.KeyValue{attribute.String("mcpsts.repeated.event", name), attribute.String("mcpsts.repeated.kinds", "many")}
	}
	r, ok := a.kinds[key]
	if !ok {
		a.kinds[key] = &repeated{name: name, attrs: kind}
		a.order = append(a.order, key)
		return true
	}
	if r.count == 0 {
		r.first = at
	}
	r.count++
	r.last = at
	return false
}

// Flush writes a summary line for every kind counted since the last
// flush, and starts a new interval.
func (a *Aggregator) Flush(now time.Time) error {
	a.mu.Lock()
	kinds, order := a.kinds, a.order
	a.kinds, a.order = map[string]*repeated{}, nil
	a.mu.Unlock()
	var firstErr error
	for _, key := range order {
		r := kinds[key]
		if r.count == 0 {
			continue
		}
		attrs := append(r.attrs, attribute.Int64("mcpsts.repeated.count", r.count),
			attribute.String("mcpsts.repeated.first", r.first.UTC().Format(time.RFC3339Nano)),
			attribute.String("mcpsts.repeated.last", r.last.UTC().Format(time.RFC3339Nano)))
		kind := attribute.NewSet(r.attrs...)
		a.log.Info("refusals repeated", "event", r.name, "count", r.count, "kind", kind.Encoded(attribute.DefaultEncoder()))
		if a.out == nil {
			continue
		}
		if err := a.out.Decision(EventRepeated, now, trace.SpanContext{}, attrs); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// Run flushes every interval until ctx is done (the owner of the log
// flushes once more before closing it).
func (a *Aggregator) Run(ctx context.Context, now func() time.Time) {
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.Flush(now()); err != nil {
				a.log.Error("audit log: repeated refusals not recorded", "error", err)
			}
		}
	}
}
