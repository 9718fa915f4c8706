package auditlog_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/mcpsts/mcpsts/internal/auditlog"
)

// write appends n events from several goroutines and closes the log.
func write(t *testing.T, path string, n int) {
	t.Helper()
	l, err := auditlog.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 4 {
				if err := l.Append(auditlog.Event{Name: "token.allow", Attrs: []attribute.KeyValue{attribute.String("mcpsts.subject.id", fmt.Sprint("agent-", i))}}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func verify(path string) (int, error) {
	f, _ := os.Open(path)
	defer f.Close()
	n, _, err := auditlog.Verify(f, auditlog.Start{})
	return n, err
}

// rehash gives line a hash of its own content again, as a forger would.
func rehash(line string) string {
	i := strings.LastIndex(line, `,"hash":"`)
	body := line[:i] + "}"
	sum := sha256.Sum256([]byte(body))
	return line[:i] + `,"hash":"` + hex.EncodeToString(sum[:]) + `"}`
}

func TestChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	write(t, path, 10)
	write(t, path, 5) // a restart continues the chain
	if n, err := verify(path); err != nil || n != 15 {
		t.Fatalf("intact log: %d lines, %v", n, err)
	}
	ls := lines(t, path)
	if !regexp.MustCompile(`^\{"event":"token.allow","time":"[^"]+Z","seq":1,"prev":"0{64}","subject.id":"agent-\d+","hash":"[0-9a-f]{64}"\}$`).MatchString(ls[0]) {
		t.Fatalf("first line %s", ls[0])
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}

	tests := []struct {
		name   string
		tamper func([]string) []string
		want   string
	}{
		{"an edited line", func(ls []string) []string {
			ls[3] = strings.Replace(ls[3], "agent-", "admin-", 1)
			return ls
		}, "line 4: its hash does not match its content: the line was edited"},
		{"a deleted line", func(ls []string) []string { return append(ls[:6:6], ls[7:]...) },
			"line 7: prev does not match the hash of line 6: a line before it was deleted, inserted or moved"},
		{"a reordered pair", func(ls []string) []string {
			ls[8], ls[9] = ls[9], ls[8]
			return ls
		}, "line 9: prev does not match the hash of line 8: a line before it was deleted, inserted or moved"},
		{"the first line deleted", func(ls []string) []string { return ls[1:] },
			"line 1: the first line does not start the chain: lines before it were deleted"},
		{"a seq skipped (the line re-hashed)", func(ls []string) []string {
			ls[14] = rehash(strings.Replace(ls[14], `"seq":15,`, `"seq":16,`, 1))
			return ls
		}, "line 15: seq 16 follows seq 14"},
		{"a hash removed", func(ls []string) []string {
			ls[11] = ls[11][:strings.LastIndex(ls[11], `,"hash"`)] + "}"
			return ls
		}, "line 12: no hash member at its end"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "audit.log")
			os.WriteFile(p, []byte(strings.Join(tc.tamper(lines(t, path)), "\n")+"\n"), 0o600)
			_, err := verify(p)
			var be *auditlog.BreakError
			if !errors.As(err, &be) || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}

	// A log whose last line was tampered with is not appended to.
	p := filepath.Join(t.TempDir(), "audit.log")
	ls = lines(t, path)
	ls[len(ls)-1] = strings.Replace(ls[len(ls)-1], "agent-", "admin-", 1)
	os.WriteFile(p, []byte(strings.Join(ls, "\n")+"\n"), 0o600)
	if _, err := auditlog.Open(p, nil); err == nil || !strings.Contains(err.Error(), "the last line is not intact") {
		t.Fatalf("open of a tampered log: %v", err)
	}
}

// TestProcessor: the spans the filter names become lines with their
// mcpsts.* attributes, trace and span IDs; others are not written.
func TestProcessor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := auditlog.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(l.Processor(func(s sdktrace.ReadOnlySpan) (string, bool) {
		for _, kv := range s.Attributes() {
			if kv.Key == "mcpsts.decision" {
				return "token." + kv.Value.AsString(), true
			}
		}
		return "", false
	})))
	tr := tp.Tracer("test")
	_, token := tr.Start(context.Background(), "token")
	token.SetAttributes(attribute.String("mcpsts.decision", "deny"), attribute.String("mcpsts.deny.reason", "no map"), attribute.String("http.route", "/token"))
	token.End()
	_, other := tr.Start(context.Background(), "jwks")
	other.End()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ls := lines(t, path)
	want := `","seq":1,"prev":"` + strings.Repeat("0", 64) + `","trace_id":"` + token.SpanContext().TraceID().String() + `","span_id":"` +
		token.SpanContext().SpanID().String() + `","decision":"deny","deny.reason":"no map","hash":"`
	if len(ls) != 1 || !strings.HasPrefix(ls[0], `{"event":"token.deny","time":"`) || !strings.Contains(ls[0], want) {
		t.Fatalf("lines %q", ls)
	}
	if err := l.Append(auditlog.Event{Name: "late"}); err == nil {
		t.Fatal("append after close")
	}
}

func BenchmarkAppend(b *testing.B) {
	l, err := auditlog.Open(filepath.Join(b.TempDir(), "audit.log"), nil)
	if err != nil {
		b.Fatal(err)
	}
	f := []attribute.KeyValue{attribute.String("mcpsts.subject.id", "system:serviceaccount:apps:agent"), attribute.String("mcpsts.client_id", "agent"),
		attribute.String("mcpsts.decision", "allow"), attribute.String("mcpsts.granted.audience", "https://mcp.example.com/mcp"),
		attribute.String("mcpsts.token.jti", "abc"), attribute.String("trace_id", strings.Repeat("a", 32))}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		l.Append(auditlog.Event{Name: "token.allow", Time: now, Attrs: f})
	}
	l.Close()
}

// TestTwoWriters: the server and a command line tool appending to one
// log keep one chain.
func TestTwoWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	a, err := auditlog.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := auditlog.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		l := a
		if i%3 == 0 {
			l = b
		}
		l.Append(auditlog.Event{Name: "token.allow", Attrs: []attribute.KeyValue{attribute.Int("i", i)}})
		if i%10 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if err := errors.Join(a.Close(), b.Close()); err != nil {
		t.Fatal(err)
	}
	if n, err := verify(path); err != nil || n != 200 {
		t.Fatalf("%d lines, %v", n, err)
	}
}
