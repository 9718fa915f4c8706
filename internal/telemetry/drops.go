package telemetry

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Spans lost on the way to the collector are counted, never waited for:
// a bounded queue sits in front of the exporter's batch processor (which
// blocks, so that it loses nothing itself), and a span that finds the
// queue full is dropped and counted (reason queue_full); a batch the
// exporter fails to send is counted too (reason export_failed).
const metricDropped = "mcpsts.telemetry.spans.dropped"

type droppingQueue struct {
	next    sdktrace.SpanProcessor
	queue   chan sdktrace.ReadOnlySpan
	dropped metric.Int64Counter
	full    metric.MeasurementOption

	mu     sync.RWMutex // OnEnd holds it shared; Shutdown exclusively
	closed bool
	done   chan struct{}
}

func newDroppingQueue(next sdktrace.SpanProcessor, size int, dropped metric.Int64Counter) *droppingQueue {
	q := &droppingQueue{next: next, queue: make(chan sdktrace.ReadOnlySpan, size), dropped: dropped,
		full: metric.WithAttributes(attribute.String("reason", "queue_full")), done: make(chan struct{})}
	go func() {
		defer close(q.done)
		for s := range q.queue {
			q.next.OnEnd(s)
		}
	}()
	return q
}

func (q *droppingQueue) OnStart(ctx context.Context, s sdktrace.ReadWriteSpan) {
	q.next.OnStart(ctx, s)
}

func (q *droppingQueue) OnEnd(s sdktrace.ReadOnlySpan) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return
	}
	select {
	case q.queue <- s:
	default:
		q.dropped.Add(context.Background(), 1, q.full)
	}
}

func (q *droppingQueue) Shutdown(ctx context.Context) error {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.queue)
	}
	q.mu.Unlock()
	select {
	case <-q.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return q.next.Shutdown(ctx)
}

func (q *droppingQueue) ForceFlush(ctx context.Context) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for len(q.queue) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return q.next.ForceFlush(ctx)
}

// countingExporter counts the spans of batches it fails to export.
type countingExporter struct {
	sdktrace.SpanExporter
	dropped metric.Int64Counter
	failed  metric.MeasurementOption
}

func (e countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	if err != nil {
		e.dropped.Add(ctx, int64(len(spans)), e.failed)
	}
	return err
}
