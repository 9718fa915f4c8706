package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/internal/auditlog"
)

// waitLines waits for the audit log to hold at least n lines.
func waitLines(t *testing.T, path string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		// Only whole lines count: the writer may be half way through one.
		var ls []string
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			ls = strings.Split(string(b[:i]), "\n")
		}
		if len(ls) >= n {
			return ls
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit log has %d lines, want %d:\n%s", len(ls), n, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAuditLog: token decisions are lines of the hash-chained audit log,
// even when the caller's traceparent says not to sample; `mcpsts audit
// verify` accepts the log and names the first line of a tampered one.
func TestAuditLog(t *testing.T) {
	idp := federationtest.NewIssuer(t)
	idpCA := filepath.Join(t.TempDir(), "idp.pem")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	logFile := filepath.Join(t.TempDir(), "audit.log")
	broker, ca := serveBroker(t, `id: agent
match: {provider: ci, subject: "system:serviceaccount:apps:agent"}
grant: {client_id: agent, audiences: ["https://mcp.example.com/mcp"], scopes: [read]}
`, fmt.Sprintf("providers:\n  - {name: ci, issuer: %s, discovery: true, ca_file: %s}\naudit: {file: %s}", idp.URL, idpCA, logFile))
	c := clientTrusting(t, ca)
	n := time.Now().Unix()
	exchange := func(resource string) int {
		sub := idp.Sign(map[string]any{"iss": idp.URL, "sub": "system:serviceaccount:apps:agent", "aud": broker, "iat": n, "exp": n + 600}, nil)
		req, _ := http.NewRequest(http.MethodPost, broker+"/token", strings.NewReader(url.Values{
			"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {sub},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {resource},
		}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		// Not sampled, says the caller: the decision is audited anyway.
		req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if exchange("https://mcp.example.com/mcp") != 200 || exchange("https://other.example.com/mcp") != 400 {
		t.Fatal("exchanges")
	}
	ls := waitLines(t, logFile, 2)
	for i, want := range []string{`"event":"token.allow"`, `"event":"token.deny"`} {
		if !strings.Contains(ls[i], want) || !strings.Contains(ls[i], `"subject.id":"system:serviceaccount:apps:agent"`) ||
			!strings.Contains(ls[i], `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"`) {
			t.Fatalf("line %d: %s", i+1, ls[i])
		}
	}
	if !strings.Contains(ls[1], `"deny.trace":"{`) || !strings.Contains(ls[0], `"token.jti":"`) {
		t.Fatalf("lines lack the explain trace or jti:\n%s", strings.Join(ls, "\n"))
	}
	for _, l := range ls {
		if strings.Contains(l, "eyJ") {
			t.Fatalf("a JWT in the audit log: %s", l)
		}
	}

	out, _, err := run(t, testEnv(nil), "audit", "verify", logFile)
	if err != nil || !strings.Contains(out, ": 2 lines from seq 1, chain intact; last hash ") {
		t.Fatalf("verify: %q %v", out, err)
	}
	tampered := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(tampered, []byte(strings.Replace(strings.Join(ls, "\n")+"\n", `"token.deny"`, `"token.allow"`, 1)), 0o600)
	if _, _, err := run(t, testEnv(nil), "audit", "verify", tampered); err == nil ||
		err.Error() != tampered+": the chain is broken at line 2: its hash does not match its content: the line was edited" {
		t.Fatalf("verify of a tampered log: %v", err)
	}
}

// TestTokenSpansExported: with an exporter (OTLP over HTTP to a loopback
// receiver that decodes the protobuf), a token request is a span tree in
// the caller's trace (token, attest, decide, mint), and its decision is
// still one line of the audit log, written once.
func TestTokenSpansExported(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "OTEL_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	var mu sync.Mutex
	var names []string // of the spans of the caller's trace
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			t.Errorf("%s: %v", r.URL.Path, err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					if hex.EncodeToString(s.TraceId) == traceID {
						names = append(names, s.Name)
					}
				}
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer col.Close()
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")

	idp := federationtest.NewIssuer(t)
	idpCA := filepath.Join(t.TempDir(), "idp.pem")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	logFile := filepath.Join(t.TempDir(), "audit.log")
	broker, ca := serveBrokerEnv(t, testEnv(map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}), `id: agent
match: {provider: ci, subject: "system:serviceaccount:apps:agent"}
grant: {client_id: agent, audiences: ["https://mcp.example.com/mcp"], scopes: [read]}
`, fmt.Sprintf("providers:\n  - {name: ci, issuer: %s, discovery: true, ca_file: %s}\naudit: {file: %s}", idp.URL, idpCA, logFile))
	exchange := func(jti, traceparent string) {
		t.Helper()
		n := time.Now().Unix()
		sub := idp.Sign(map[string]any{"iss": idp.URL, "sub": "system:serviceaccount:apps:agent", "aud": broker, "iat": n, "exp": n + 600, "jti": jti}, nil)
		req, _ := http.NewRequest(http.MethodPost, broker+"/token", strings.NewReader(url.Values{
			"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {sub},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {"https://mcp.example.com/mcp"},
		}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if traceparent != "" {
			req.Header.Set("traceparent", traceparent)
		}
		resp, err := clientTrusting(t, ca).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("exchange: %d", resp.StatusCode)
		}
	}
	// The provider's key set loads in the background from start-up; a
	// first exchange (in a trace of its own) returns once it has, so that
	// the traced one does not fetch it (a federation.fetch span).
	exchange("warm-up", "")
	ls := waitLines(t, logFile, 1)
	exchange("traced", "00-"+traceID+"-00f067aa0ba902b7-01")
	want := []string{"token"} // the steps are timed on it
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		got := slices.Sorted(slices.Values(names))
		mu.Unlock()
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exported spans of the trace %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ls = waitLines(t, logFile, 2)
	time.Sleep(100 * time.Millisecond) // a third line, were the decision written twice
	if ls = waitLines(t, logFile, 2); len(ls) != 2 || !strings.Contains(ls[1], `"event":"token.allow"`) || !strings.Contains(ls[1], `"trace_id":"`+traceID+`"`) {
		t.Fatalf("audit log:\n%s", strings.Join(ls, "\n"))
	}
}

// TestAuditRotationServerAndCLI: the server rotates its audit log by size
// under load while key rotations from the command line append to the same
// log; mcpsts audit verify checks the rotated set as one chain, and names
// a file that goes missing.
func TestAuditRotationServerAndCLI(t *testing.T) {
	idp := federationtest.NewIssuer(t)
	dir := t.TempDir()
	idpCA := filepath.Join(dir, "idp.pem")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	audit := filepath.Join(dir, "audit.log")
	broker, ca, file := serveBrokerFile(t, testEnv(nil), `id: agent
match: {provider: ci, subject_pattern: "agent-.*"}
grant: {client_id: agent, audiences: ["https://mcp.example.com/mcp"]}
`, fmt.Sprintf(`providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}
limits: {per_identity: {rate: 0}, per_client: {rate: 0}, per_source: {rate: 0}}
audit: {file: %s, max_size: 64KiB, compress: true}`, idp.URL, idpCA, audit))
	c := clientTrusting(t, ca)
	var wg sync.WaitGroup
	var granted atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				n := time.Now().Unix()
				tok := idp.Sign(map[string]any{"iss": idp.URL, "sub": fmt.Sprintf("agent-%d-%d", w, i), "aud": broker, "iat": n, "exp": n + 600}, nil)
				resp, err := c.PostForm(broker+"/token", url.Values{"grant_type": {exchange.GrantTokenExchange}, "subject_token": {tok},
					"subject_token_type": {exchange.TokenTypeJWT}, "resource": {"https://mcp.example.com/mcp"}})
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					granted.Add(1)
				}
			}
		}()
	}
	for range 3 {
		if _, _, err := run(t, testEnv(nil), "keys", "rotate", "--config", file); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond) // the last batch, and compression
	out, _, err := run(t, testEnv(nil), "audit", "verify", audit)
	if err != nil || !strings.Contains(out, "chain intact") || strings.Count(out, ".gz: ") < 3 {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	rc, err := auditlog.OpenSet(audit)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(rc)
	rc.Close()
	if n := strings.Count(string(all), `"event":"token.allow"`); int64(n) != granted.Load() || n != 400 {
		t.Fatalf("%d token.allow lines for %d tokens", n, granted.Load())
	}
	if n := strings.Count(string(all), `"event":"keys.rotate"`); n != 3 {
		t.Fatalf("%d keys.rotate lines, want 3", n)
	}
	// A rotated file removed from the middle is named.
	files, _ := auditlog.Files(audit)
	os.Remove(files[1])
	_, _, err = run(t, testEnv(nil), "audit", "verify", audit)
	if err == nil || !strings.Contains(err.Error(), "continues "+strings.TrimSuffix(filepath.Base(files[1]), ".gz")+", which is missing") {
		t.Fatalf("verify with a file missing: %v", err)
	}
	// The oldest files removed (issue 32: it said "chain intact"): broken
	// from the genesis; intact from the seq the kept files begin at.
	os.Remove(files[0])
	_, _, err = run(t, testEnv(nil), "audit", "verify", audit)
	m := regexp.MustCompile(`the chain starts at seq (\d+), continuing .*--from-seq (\d+)`).FindStringSubmatch(fmt.Sprint(err))
	if m == nil || m[1] != m[2] {
		t.Fatalf("verify with the oldest files removed: %v", err)
	}
	if out, _, err := run(t, testEnv(nil), "audit", "verify", audit, "--from-seq", m[1]); err != nil || !strings.Contains(out, "chain intact") || !strings.Contains(out, "seq "+m[1]+" to ") {
		t.Fatalf("verify --from-seq %s: %v\n%s", m[1], err, out)
	}
	var ee *exitError
	if _, _, err := run(t, testEnv(nil), "audit", "verify", audit, "--expect-hash", "x"); !errors.As(err, &ee) || ee.code != exitConfig {
		t.Fatalf("--expect-hash alone: %v", err)
	}
}

// TestAuditVerifyKeptLog (issue 32): after max_files removed the oldest
// files, verify starts where the lock file records the kept log begins and
// says so; a kept file removed as well is found without any flag.
func TestAuditVerifyKeptLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := auditlog.OpenWith(path, auditlog.Options{MaxSize: 64 << 10, MaxFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 900)
	for i := range 400 {
		if err := l.Decision("token.allow", time.Now(), trace.SpanContext{}, []attribute.KeyValue{attribute.String("mcpsts.pad", pad), attribute.Int("i", i)}); err != nil {
			t.Fatal(err)
		}
		if i%20 == 19 {
			l.Flush()
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := auditlog.Files(path)
	if len(files) != 3 {
		t.Fatalf("files %v, want two rotated files and the log", files)
	}
	out, _, err := run(t, testEnv(nil), "audit", "verify", path)
	m := regexp.MustCompile(`the kept log begins at seq (\d+)`).FindStringSubmatch(out)
	if err != nil || m == nil || !strings.Contains(out, "chain intact") || !strings.Contains(out, "seq "+m[1]+" to ") {
		t.Fatalf("verify a pruned log: %v\n%s", err, out)
	}
	os.Remove(files[0])
	if _, _, err := run(t, testEnv(nil), "audit", "verify", path); err == nil || !strings.Contains(err.Error(), ", not "+m[1]) {
		t.Fatalf("verify with a kept file removed: %v", err)
	}
}
