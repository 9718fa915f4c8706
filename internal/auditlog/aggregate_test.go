package auditlog_test

import (
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpsts/mcpsts/internal/auditlog"
)

type writtenLine struct {
	name  string
	attrs map[string]string
}

type sink struct {
	mu  sync.Mutex
	got []writtenLine
}

func (l *sink) Decision(name string, _ time.Time, _ trace.SpanContext, attrs []attribute.KeyValue) error {
	m := map[string]string{}
	for _, kv := range attrs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	l.mu.Lock()
	l.got = append(l.got, writtenLine{name, m})
	l.mu.Unlock()
	return nil
}

func refused(source, errCode string, extra ...attribute.KeyValue) []attribute.KeyValue {
	return append([]attribute.KeyValue{attribute.String("mcpsts.source_ip", source), attribute.String("mcpsts.error", errCode),
		attribute.String("mcpsts.deny.reason", "the credential was refused")}, extra...)
}

// TestAggregator (issue 32): refusals no identity stands behind are
// written once per kind an interval and counted; decisions about an
// identity, and grants, are each written.
func TestAggregator(t *testing.T) {
	out := &sink{}
	a := auditlog.NewAggregator(out, auditlog.AggregatorOptions{MaxKinds: 4})
	t0 := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	record := func(name string, attrs []attribute.KeyValue) bool {
		t.Helper()
		written, err := a.Record(name, t0, trace.SpanContext{}, attrs)
		if err != nil {
			t.Fatal(err)
		}
		return written
	}
	for i := range 100 {
		if w := record("token.deny", refused("198.51.100.7", "invalid_request")); w != (i == 0) {
			t.Fatalf("refusal %d from one source: written %v", i, w)
		}
	}
	for _, tc := range []struct {
		name    string
		event   string
		attrs   []attribute.KeyValue
		written bool
	}{
		{"another source", "token.deny", refused("198.51.100.8", "invalid_request"), true},
		{"another error", "token.deny", refused("198.51.100.7", "invalid_client"), true},
		{"a denial about a verified identity", "token.deny", refused("198.51.100.7", "invalid_request", attribute.String("mcpsts.subject.id", "agent")), true},
		{"the same again", "token.deny", refused("198.51.100.7", "invalid_request", attribute.String("mcpsts.subject.id", "agent")), true},
		{"a grant", "token.allow", []attribute.KeyValue{attribute.String("mcpsts.source_ip", "198.51.100.7")}, true},
		{"a grant again", "token.allow", []attribute.KeyValue{attribute.String("mcpsts.source_ip", "198.51.100.7")}, true},
		{"a registration refused", "client.register_refused", refused("198.51.100.7", "invalid_client_metadata"), true},
		// Past MaxKinds (4 kinds told apart), the rest of an event count
		// together: the first of them is written, the others counted.
		{"beyond the kinds told apart", "client.register_refused", refused("198.51.100.9", "invalid_client_metadata"), true},
		{"beyond, again", "client.register_refused", refused("198.51.100.10", "invalid_redirect_uri"), false},
	} {
		if w := record(tc.event, tc.attrs); w != tc.written {
			t.Errorf("%s: written %v, want %v", tc.name, w, tc.written)
		}
	}
	before := len(out.got)
	if err := a.Flush(t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	sums := out.got[before:]
	if len(sums) != 2 {
		t.Fatalf("%d summary written, want 2: %+v", len(sums), sums)
	}
	first := sums[0]
	if first.name != auditlog.EventRepeated || first.attrs["mcpsts.repeated.event"] != "token.deny" || first.attrs["mcpsts.source_ip"] != "198.51.100.7" ||
		first.attrs["mcpsts.error"] != "invalid_request" || first.attrs["mcpsts.repeated.count"] != "99" || first.attrs["mcpsts.deny.reason"] != "" {
		t.Errorf("summary %+v", first)
	}
	if many := sums[1]; many.attrs["mcpsts.repeated.kinds"] != "many" || many.attrs["mcpsts.repeated.count"] != "1" {
		t.Errorf("summary of the kinds beyond: %+v", many)
	}
	// A new interval: the first of a kind is written again.
	if !record("token.deny", refused("198.51.100.7", "invalid_request")) {
		t.Error("the first refusal of a new interval was not written")
	}
	// Without a log, refusals are still told apart for the caller's log.
	bare := auditlog.NewAggregator(nil, auditlog.AggregatorOptions{})
	if w, _ := bare.Record("gateway.refuse", t0, trace.SpanContext{}, refused("::1", "")); !w {
		t.Error("the first refusal: not to be logged")
	}
	if w, _ := bare.Record("gateway.refuse", t0, trace.SpanContext{}, refused("::1", "")); w {
		t.Error("the second refusal: to be logged")
	}
}
