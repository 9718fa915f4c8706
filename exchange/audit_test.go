package exchange_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/internal/auditlog"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// TestAuditSpans: every request is a span with the mcpsts.* attributes of
// its decision; a canary in the subject token, and the tokens themselves,
// appear in no span, log line, error answer or audit log line of the run.
func TestAuditSpans(t *testing.T) {
	e := newEnv(t)
	rec := tracetest.NewSpanRecorder()
	logFile := filepath.Join(t.TempDir(), "audit.log")
	audit, err := auditlog.Open(logFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.restart(t, func(c *exchange.Config) {
		c.Tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
		c.Audit = audit
	})
	const canary = "CANARY-b81f"
	good := e.subjectToken(mainSub, func(c map[string]any) { c["note"] = canary })
	res := e.post(t, exchangeForm(good), nil)
	if res.status != 200 {
		t.Fatal(res.raw)
	}
	bad := e.subjectToken(mainSub, func(c map[string]any) { c["note"] = canary; c["exp"] = 1 })
	denied := e.post(t, exchangeForm(bad), nil)
	replayed := e.post(t, exchangeForm(good), nil)
	malformed := e.post(t, exchangeForm(good[:len(good)-5]+canary), nil)
	if err := audit.Close(); err != nil {
		t.Fatal(err)
	}
	lines, _ := os.ReadFile(logFile)
	if strings.Count(string(lines), "\n") != 4 {
		t.Fatalf("audit log:\n%s", lines)
	}
	for name, text := range map[string]string{"logs": e.logs.String(), "audit log": string(lines),
		"denial": denied.raw, "replay": replayed.raw, "malformed": malformed.raw} {
		for _, secret := range []string{good, bad, res.body["access_token"].(string), canary, strings.Split(good, ".")[2]} {
			if strings.Contains(text, secret) {
				t.Fatalf("the %s hold a token or its content:\n%s", name, text)
			}
		}
	}

	var spans []sdktrace.ReadOnlySpan // the server spans
	for _, s := range rec.Ended() {
		for _, kv := range s.Attributes() {
			for _, tok := range []string{good, bad, res.body["access_token"].(string), canary} {
				if strings.Contains(kv.Value.Emit(), tok) {
					t.Fatalf("span %s attribute %s holds a token or its content", s.Name(), kv.Key)
				}
			}
		}
		if s.Parent().IsValid() {
			continue
		}
		spans = append(spans, s)
	}
	var names []string
	attrs := map[string]map[string]string{}
	for i, s := range spans {
		names = append(names, s.Name())
		m := map[string]string{}
		for _, kv := range s.Attributes() {
			m[string(kv.Key)] = kv.Value.Emit()
			for _, tok := range []string{good, bad, res.body["access_token"].(string), canary} {
				if strings.Contains(kv.Value.Emit(), tok) {
					t.Fatalf("span %s attribute %s holds a token or its content", s.Name(), kv.Key)
				}
			}
		}
		attrs[fmt.Sprint(i, s.Name())] = m
	}
	if fmt.Sprint(names) != "[token token token token]" {
		t.Fatalf("spans %v", names)
	}
	grant := attrs["0token"]
	for k, want := range map[string]string{
		"mcpsts.grant_type": exchange.GrantTokenExchange, "mcpsts.subject.provider": "ci", "mcpsts.subject.id": mainSub,
		"mcpsts.trust_map.id": "ci-payments", "mcpsts.client_id": "payments-ci", "mcpsts.granted.audience": "https://payments.example.com/mcp",
		"mcpsts.granted.scopes": "payments:read", "mcpsts.decision": "allow", "mcpsts.request.audience": "https://payments.example.com/mcp",
	} {
		if grant[k] != want {
			t.Errorf("grant span %s = %q, want %q", k, grant[k], want)
		}
	}
	if grant["mcpsts.token.jti"] == "" || grant["mcpsts.token.exp"] == "" {
		t.Errorf("grant span without jti/exp: %v", grant)
	}
	deny := attrs["1token"]
	if deny["mcpsts.decision"] != "deny" || deny["mcpsts.error"] != "invalid_request" || deny["mcpsts.deny.reason"] != "the credential was refused" || deny["mcpsts.deny.check"] != "token_expired" {
		t.Errorf("denial span %v", deny)
	}
	if spans[1].Status().Code.String() != "Error" {
		t.Errorf("denial span status %v", spans[1].Status())
	}
}

// TestAuditWithoutSpans: with no tracer (a server that exports no spans)
// every decision is still a line of the audit log, with the mcpsts.*
// attributes, the caller's trace ID (or a new one, which the error answer
// names too) and a span ID of its own.
func TestAuditWithoutSpans(t *testing.T) {
	e := newEnv(t)
	logFile := filepath.Join(t.TempDir(), "audit.log")
	audit, err := auditlog.Open(logFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.restart(t, func(c *exchange.Config) { c.Tracer, c.Audit = nil, audit })
	const caller = "4bf92f3577b34da6a3ce929d0e0e4736"
	res := e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), func(r *http.Request) { r.Header.Set("traceparent", "00-"+caller+"-00f067aa0ba902b7-00") })
	if res.status != 200 {
		t.Fatal(res.raw)
	}
	form := exchangeForm(e.subjectToken(mainSub, nil))
	form.Set("resource", "https://other.example.com/mcp")
	denied := e.post(t, form, nil)
	if denied.status != 400 {
		t.Fatal(denied.raw)
	}
	if err := audit.Close(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(logFile)
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 {
		t.Fatalf("audit log:\n%s", raw)
	}
	allow, deny := lines[0], lines[1]
	if allow["event"] != "token.allow" || allow["trace_id"] != caller || allow["span_id"] == "00f067aa0ba902b7" || len(allow["span_id"].(string)) != 16 ||
		allow["subject.id"] != mainSub || allow["client_id"] != "payments-ci" || allow["token.jti"] == nil {
		t.Errorf("allow line %v", allow)
	}
	if deny["event"] != "token.deny" || deny["trace_id"] != denied.body["trace_id"] || deny["trace_id"] == caller ||
		deny["error"] != "invalid_target" || !strings.HasPrefix(deny["deny.trace"].(string), "{") {
		t.Errorf("deny line %v (answer %s)", deny, denied.raw)
	}
	if n, _, err := auditlog.Verify(strings.NewReader(string(raw)), auditlog.Start{}); n != 2 || err != nil {
		t.Errorf("verify: %d %v", n, err)
	}
}

// failingLog is an audit log that cannot be written.
type failingLog struct{ calls []string }

func (f *failingLog) Decision(name string, _ time.Time, _ trace.SpanContext, _ []attribute.KeyValue) error {
	f.calls = append(f.calls, name)
	return errors.New("auditlog: write: no space left on device")
}

// TestAuditFailsClosed: a token whose decision cannot be recorded is not
// issued: 503 temporarily_unavailable; a denial is answered as it was.
func TestAuditFailsClosed(t *testing.T) {
	e := newEnv(t)
	audit := &failingLog{}
	reader := sdkmetric.NewManualReader()
	e.restart(t, func(c *exchange.Config) {
		c.Audit = audit
		c.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
	})
	res := e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), nil)
	if res.status != 503 || res.body["error"] != "temporarily_unavailable" || res.body["access_token"] != nil ||
		res.body["error_description"] != "the decision could not be recorded in the audit log; retry later" {
		t.Fatalf("unrecorded grant: %d %s", res.status, res.raw)
	}
	if strings.Contains(res.raw, "no space") {
		t.Errorf("the answer tells internals: %s", res.raw)
	}
	form := exchangeForm(e.subjectToken(mainSub, nil))
	form.Set("resource", "https://other.example.com/mcp")
	if denied := e.post(t, form, nil); denied.status != 400 || denied.body["error"] != "invalid_target" {
		t.Fatalf("unrecorded denial: %d %s", denied.status, denied.raw)
	}
	var rm metricdata.ResourceMetrics
	reader.Collect(context.Background(), &rm)
	counted := false
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "mcpsts.token.decisions" {
				for _, p := range d.DataPoints {
					check, _ := p.Attributes.Value("check")
					code, _ := p.Attributes.Value("error")
					counted = counted || check.AsString() == "audit_log" && code.AsString() == "temporarily_unavailable" && p.Value == 1
				}
			}
		}
	}
	if !counted {
		t.Errorf("the refusal is not counted with check=audit_log: %+v", rm)
	}
	if fmt.Sprint(audit.calls) != "[token.allow token.deny]" {
		t.Errorf("decisions %v", audit.calls)
	}
	if !strings.Contains(e.logs.String(), "level=ERROR msg=\"audit log\"") {
		t.Errorf("the failure is not logged:\n%s", e.logs)
	}
}

// tree renders the spans of the trace whose server span ended last as
// "parent[child child[grandchild]]", children in start order.
func tree(rec *tracetest.SpanRecorder) (string, map[string]string) {
	spans := rec.Ended()
	var root sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "token" {
			root = s
		}
	}
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		if s.SpanContext().TraceID() == root.SpanContext().TraceID() {
			children[s.Parent().SpanID()] = append(children[s.Parent().SpanID()], s)
		}
	}
	var render func(s sdktrace.ReadOnlySpan) string
	render = func(s sdktrace.ReadOnlySpan) string {
		kids := children[s.SpanContext().SpanID()]
		sort.Slice(kids, func(i, j int) bool { return kids[i].StartTime().Before(kids[j].StartTime()) })
		var parts []string
		for _, k := range kids {
			parts = append(parts, render(k))
		}
		if len(parts) == 0 {
			return s.Name()
		}
		return s.Name() + "[" + strings.Join(parts, " ") + "]"
	}
	attrs := map[string]string{}
	for _, kv := range root.Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	return render(root), attrs
}

// TestStepTimings: each step of an allowed, a denied, a delegated and a
// consent-denied exchange is timed on the request's one server span
// (mcpsts.step.*_us), the step that refused is named, a denial carries its
// explain trace, and only what happens rarely (a key set fetched, a
// single-use claim) is a child span.
func TestStepTimings(t *testing.T) {
	e := newEnv(t)
	steps := func(attrs map[string]string) string {
		var got []string
		for _, s := range []string{"inspect", "attest", "decide", "consent", "mint"} {
			if v, ok := attrs["mcpsts.step."+s+"_us"]; ok {
				if n, err := strconv.Atoi(v); err != nil || n < 0 {
					t.Fatalf("step %s: %q", s, v)
				}
				got = append(got, s)
			}
		}
		return strings.Join(got, " ")
	}
	if res := e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), nil); res.status != 200 { // loads the keys
		t.Fatal(res.raw)
	}
	got, attrs := tree(e.rec)
	if got != "token[federation.fetch federation.fetch replay.claim]" || steps(attrs) != "attest decide mint" || attrs["mcpsts.decision"] != "allow" {
		t.Fatalf("first exchange: %s %v", got, attrs)
	}
	if res := e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), nil); res.status != 200 {
		t.Fatal(res.raw)
	}
	if got, attrs = tree(e.rec); got != "token[replay.claim]" || steps(attrs) != "attest decide mint" || attrs["mcpsts.deny.step"] != "" {
		t.Fatalf("allowed: %s %v", got, attrs)
	}

	f := exchangeForm(e.subjectToken(mainSub, nil))
	f.Set("resource", "https://elsewhere.example.com/mcp")
	if res := e.post(t, f, nil); res.status != 400 {
		t.Fatal(res.raw)
	}
	got, attrs = tree(e.rec)
	var explained trustmaps.Trace
	if got != "token[replay.claim]" || steps(attrs) != "attest decide" || attrs["mcpsts.deny.step"] != "decide" || attrs["mcpsts.decision"] != "deny" ||
		json.Unmarshal([]byte(attrs["mcpsts.deny.trace"]), &explained) != nil || explained.Subject != mainSub || len(explained.Maps) == 0 || explained.Denial == "" {
		t.Fatalf("denied: %s %v", got, attrs)
	}
	expired := e.subjectToken(mainSub, func(c map[string]any) { c["exp"] = e.now.Add(-time.Hour).Unix() })
	e.post(t, exchangeForm(expired), nil)
	if _, attrs = tree(e.rec); steps(attrs) != "attest" || attrs["mcpsts.deny.step"] != "attest" {
		t.Fatalf("expired subject token: %v", attrs)
	}

	in := e.incoming(t)
	if res := e.post(t, delegationForm(in, e.subjectToken(serverSub, nil), "https://ledger.example.com/mcp"), nil); res.status != 200 {
		t.Fatal(res.raw)
	}
	got, attrs = tree(e.rec)
	if got != "token[replay.claim]" || steps(attrs) != "inspect attest decide mint" || attrs["mcpsts.actor.id"] != "ci/"+serverSub || attrs["mcpsts.decision"] != "allow" {
		t.Fatalf("delegated: %s %v", got, attrs)
	}

	corp, _ := withUsers(t, e)
	n := e.now.Unix()
	user := corp.Sign(map[string]any{"iss": corp.URL, "sub": "alice", "aud": broker, "iat": n, "exp": n + 3600}, nil)
	res := e.post(t, url.Values{
		"grant_type": {exchange.GrantTokenExchange}, "subject_token": {user}, "subject_token_type": {exchange.TokenTypeIDToken},
		"actor_token": {e.subjectToken(mainSub, nil)}, "actor_token_type": {exchange.TokenTypeJWT}, "resource": {"https://payments.example.com/mcp"},
	}, nil)
	if res.status != 400 {
		t.Fatal(res.raw)
	}
	_, attrs = tree(e.rec)
	if steps(attrs) != "attest decide consent" || attrs["mcpsts.decision"] != "deny" ||
		attrs["mcpsts.subject.id"] != "alice" || !strings.Contains(attrs["mcpsts.deny.reason"], "has not consented") {
		t.Fatalf("consent denial: %v", attrs)
	}
}

// TestMetrics: decisions by result and check, latency per grant, replay
// and rate-limit rejections.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	reader := sdkmetric.NewManualReader()
	e.restart(t, func(c *exchange.Config) {
		c.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
		c.PerIdentity = exchange.RateLimit{Rate: 0.001, Burst: 2}
	})
	tok := e.subjectToken(mainSub, nil)
	e.post(t, exchangeForm(tok), nil)                                         // allowed
	e.post(t, exchangeForm(tok), nil)                                         // replayed
	e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), nil)                // allowed
	e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), nil)                // identity limit reached
	e.post(t, url.Values{"grant_type": {"password"}, "username": {"x"}}, nil) // unsupported

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					var parts []string
					for _, kv := range p.Attributes.ToSlice() {
						parts = append(parts, string(kv.Key)+"="+kv.Value.Emit())
					}
					got[m.Name+"{"+strings.Join(parts, ",")+"}"] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					g, _ := p.Attributes.Value("grant_type")
					dec, _ := p.Attributes.Value("decision")
					got[m.Name+"{"+g.Emit()+","+dec.Emit()+"}"] += int64(p.Count)
				}
			}
		}
	}
	te := exchange.GrantTokenExchange
	want := map[string]int64{
		"mcpsts.token.decisions{check=,decision=allow,error=,grant_type=" + te + "}":                             2,
		"mcpsts.token.decisions{check=token_replayed,decision=deny,error=invalid_request,grant_type=" + te + "}": 1,
		"mcpsts.token.decisions{check=rate_limit_identity,decision=deny,error=slow_down,grant_type=" + te + "}":  1,
		"mcpsts.token.decisions{check=,decision=deny,error=unsupported_grant_type,grant_type=other}":             1,
		"mcpsts.token.replay_rejections{}":          1,
		"mcpsts.token.rate_limited{limit=identity}": 1,
		"mcpsts.token.duration{" + te + ",allow}":   2,
		"mcpsts.token.duration{" + te + ",deny}":    2,
		"mcpsts.token.duration{other,deny}":         1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("metrics\n got %v\nwant %v", got, want)
	}
}

// TestAuditLinesBounded (finding 2 of the security review): no request
// value reaches an audit line at length. 64 KiB of control bytes as
// grant_type once became a 390 KB line: an unknown grant type is now
// recorded as such, and every request value (a resource, a repeated
// parameter's name, a token type) is cut to 256 bytes, marked.
func TestAuditLinesBounded(t *testing.T) {
	e := newEnv(t)
	logFile := filepath.Join(t.TempDir(), "audit.log")
	audit, err := auditlog.Open(logFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.restart(t, func(c *exchange.Config) { c.Audit = audit })
	junk := strings.Repeat("\x01", 20<<10) // 60 KiB form-encoded, under the body's cap
	huge := exchangeForm(e.subjectToken(mainSub, nil))
	huge.Set("resource", "https://payments.example.com/mcp/"+strings.Repeat("a", 50<<10))
	repeated := url.Values{"grant_type": {exchange.GrantTokenExchange}, strings.Repeat("p", 25<<10): {"a", "b"}}
	tokenType := exchangeForm("x.y.z")
	tokenType.Set("subject_token_type", "urn:"+strings.Repeat("\x02", 15<<10))
	for name, form := range map[string]url.Values{
		"grant_type":         {"grant_type": {junk}},
		"resource":           huge,
		"parameter name":     repeated,
		"subject_token_type": tokenType,
	} {
		res := e.post(t, form, nil)
		if res.status != 400 || len(res.raw) > 1024 {
			t.Errorf("%s: %d, answer of %d bytes", name, res.status, len(res.raw))
		}
	}
	if err := audit.Close(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(logFile)
	ls := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(ls) != 4 {
		t.Fatalf("%d lines:\n%.2000s", len(ls), raw)
	}
	for _, l := range ls {
		// The explain trace has a bound of its own (4 KiB); every other
		// value is at most 256 bytes.
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || len(l) > 8192 {
			t.Errorf("a line of %d bytes (%v): %.300s", len(l), err, l)
		}
		for k, v := range m {
			limit := map[string]int{"deny.trace": 4096}[k]
			if s, ok := v.(string); ok && len(s) > max(limit, 256) {
				t.Errorf("%s: a value of %d bytes", k, len(s))
			}
		}
	}
	if !strings.Contains(ls[0]+ls[1]+ls[2]+ls[3], `"grant_type":"unsupported"`) {
		t.Errorf("the unknown grant type is not recorded as such:\n%s", raw)
	}
	if !strings.Contains(string(raw), "…(truncated)") {
		t.Errorf("no value marked as cut:\n%.2000s", raw)
	}
	if n, _, err := auditlog.Verify(strings.NewReader(string(raw)), auditlog.Start{}); n != 4 || err != nil {
		t.Errorf("verify: %d %v", n, err)
	}
}

// TestPerSourceLimit: one source address gets PerSource requests, then
// 429 slow_down with Retry-After, whatever the request: the limit is
// checked before the body is read or a credential verified.
func TestPerSourceLimit(t *testing.T) {
	e := newEnv(t)
	e.restart(t, func(c *exchange.Config) { c.PerSource = exchange.RateLimit{Rate: 0.01, Burst: 2} })
	for i := range 2 {
		if res := e.post(t, url.Values{"grant_type": {"nonsense"}}, nil); res.status != 400 {
			t.Fatalf("request %d: %d %s", i, res.status, res.raw)
		}
	}
	res := e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), nil)
	if res.status != 429 || res.body["error"] != "slow_down" || res.body["error_description"] != "too many token requests for this source; retry later" || res.header.Get("Retry-After") == "" {
		t.Fatalf("third request: %d %v %s", res.status, res.header, res.raw)
	}
	if res := e.post(t, nil, func(r *http.Request) { r.Method = http.MethodGet }); res.status != 429 {
		t.Fatalf("a malformed request past the limit: %d", res.status)
	}
}
