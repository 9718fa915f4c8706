package auditlog

import (
	"bufio"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// FuzzAppendString: a value taken from a token (a subject, a client ID)
// can never break out of its JSON string: the line stays one JSON object
// whose member decodes to the value (invalid UTF-8 as U+FFFD).
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "line\nbreak\r\t\x00\x1f", "\xff\xfe invalid", "é ☃ 𝄞", `","admin":true,"x":"`, "\u2028\u2029"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString(nil, s)
		if strings.ContainsAny(string(b), "\n\r") {
			t.Fatalf("a raw line break in %q", b)
		}
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q encodes to invalid JSON %q: %v", s, b, err)
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if !utf8.ValidString(s) {
			// encoding/json replaces each bad byte; so do we.
			var w []rune
			for _, r := range s {
				w = append(w, r)
			}
			want = string(w)
		}
		if got != want {
			t.Fatalf("%q round-trips to %q, want %q", s, got, want)
		}
	})
}

// FuzzVerify: any file content gets an answer, never a panic, and an
// intact answer only for a chain that Verify's own checks accept.
func FuzzVerify(f *testing.F) {
	var buf strings.Builder
	l := &Log{prev: genesis, w: bufio.NewWriter(&buf), bufs: sync.Pool{New: func() any { return new([]byte) }}}
	for i := range 3 {
		l.line(l.encode("token.allow", time.Now(), trace.SpanContext{}, []attribute.KeyValue{attribute.Int("i", i)}, false))
	}
	l.w.Flush()
	if n, _, err := Verify(strings.NewReader(buf.String()), Start{}); n != 3 || err != nil {
		f.Fatalf("seed: %d %v", n, err)
	}
	f.Add(buf.String())
	f.Add("")
	f.Add(`{"prev":"x","hash":"y"}`)
	f.Fuzz(func(t *testing.T, s string) {
		n, last, err := Verify(strings.NewReader(s), Start{})
		if err != nil {
			return
		}
		// Intact: check the chain again, independently of Verify's loop:
		// each line's own hash, prev the hash before it, seq counting
		// from 1, and last the final hash.
		prev := genesis
		lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
		if s == "" {
			lines = nil
		}
		if len(lines) != n {
			t.Fatalf("Verify counted %d lines of %d", n, len(lines))
		}
		for i, line := range lines {
			p, h, seq, err := check([]byte(strings.TrimSuffix(line, "\r")))
			if err != nil || p != prev || seq != int64(i+1) {
				t.Fatalf("line %d accepted: prev %q (want %q), seq %d, %v", i+1, p, prev, seq, err)
			}
			prev = h
		}
		if n > 0 && last != prev {
			t.Fatalf("last hash %q, want %q", last, prev)
		}
	})
}
