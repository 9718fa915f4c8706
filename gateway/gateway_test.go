package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"golang.org/x/oauth2"

	"github.com/mcpsts/mcpsts/gateway"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/issuer/issuertest"
	"github.com/mcpsts/mcpsts/resource"
)

// upstream is an MCP server (the Go SDK's, plain http on loopback) that
// records the headers of every request it receives.
type upstream struct {
	mu        sync.Mutex
	headers   []http.Header
	cancelled chan struct{}
	sent      []time.Time // when the progress tool sent each event
}

func (u *upstream) seen() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.headers...)
}

func startUpstream(t *testing.T) (*upstream, string) {
	u := &upstream{cancelled: make(chan struct{}, 1)}
	s := mcp.NewServer(&mcp.Implementation{Name: "upstream", Version: "1.0.0"}, nil)
	type echoIn struct {
		Text string `json:"text"`
	}
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "echo"}, func(ctx context.Context, req *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "write", Description: "needs files:write"}, func(ctx context.Context, req *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "written"}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "progress", Description: "streams progress"}, func(ctx context.Context, req *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		for i := range 4 {
			time.Sleep(300 * time.Millisecond)
			u.mu.Lock()
			u.sent = append(u.sent, time.Now())
			u.mu.Unlock()
			req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: float64(i + 1), Total: 4})
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "block", Description: "waits until cancelled"}, func(ctx context.Context, req *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		<-ctx.Done()
		u.cancelled <- struct{}{}
		return nil, nil, ctx.Err()
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return u, srv.URL + "/mcp"
}

// bearer adds a token to every request, as an MCP client's OAuth does,
// and every caller header spoofed (the gateway must overwrite or drop each:
// the actor header is set only when the token has an actor) and a cookie
// (never forwarded).
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	r.Header.Set(gateway.HeaderSubject, "spoofed-admin")
	r.Header.Set(gateway.HeaderClientID, "spoofed-client")
	r.Header.Set(gateway.HeaderScopes, "admin files:write")
	r.Header.Set(gateway.HeaderActor, "workload:ci/spoofed-actor")
	r.Header.Set("Cookie", "session=spoofed")
	return b.base.RoundTrip(r)
}

// TestGateway: the Go SDK client through the gateway to a Go SDK server:
// tools listed and called with the token's caller in the gateway's
// headers and never a token; the refusals of the resource package at the
// edge; sessions bound to their caller; progress events streamed as they
// come; a client that goes away cancels the upstream call.
func TestGateway(t *testing.T) {
	up, upURL := startUpstream(t)
	var rmu sync.Mutex
	var refused []gateway.Refusal
	gw, broker, _ := serveGateway(t, upURL,
		func(rc *resource.Config) { rc.ToolScopes = map[string][]string{"write": {"files:write"}} },
		func(gc *gateway.Config) {
			gc.Refused = func(r gateway.Refusal) {
				rmu.Lock()
				refused = append(refused, r)
				rmu.Unlock()
			}
		})
	mcpURL := gw.URL + "/mcp"
	token := func(aud, client, sub string, scopes ...string) string {
		tok, err := broker.Token(aud, client, sub, scopes...)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ctx := context.Background()
	var progressAt []time.Time
	var pmu sync.Mutex
	connect := func(tok string) *mcp.ClientSession {
		c := mcp.NewClient(&mcp.Implementation{Name: "gw-test", Version: "1.0.0"}, &mcp.ClientOptions{
			ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) {
				pmu.Lock()
				progressAt = append(progressAt, time.Now())
				pmu.Unlock()
			}})
		cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: mcpURL, HTTPClient: &http.Client{Transport: bearer{tok, gw.Client().Transport}}, MaxRetries: -1}, nil)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		t.Cleanup(func() { cs.Close() })
		return cs
	}
	cs := connect(token(mcpURL, "agent", "ci/agent", "files:read"))
	tools, err := cs.ListTools(ctx, nil)
	if err != nil || len(tools.Tools) != 4 {
		t.Fatalf("tools: %v %v", tools, err)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hello"}})
	if err != nil || res.Content[0].(*mcp.TextContent).Text != "hello" {
		t.Fatalf("echo: %v %v", res, err)
	}
	for _, h := range up.seen() {
		if h.Get("Authorization") != "" || h.Get("DPoP") != "" {
			t.Fatalf("the upstream saw a credential: %v", h)
		}
		if h.Get(gateway.HeaderSubject) != "workload:ci/agent" || h.Get(gateway.HeaderClientID) != "agent" || h.Get(gateway.HeaderScopes) != "files:read" ||
			len(h.Values(gateway.HeaderActor)) != 0 || len(h.Values("Cookie")) != 0 {
			t.Fatalf("the upstream's caller headers: %v", h)
		}
	}

	// Progress arrives event by event, not at the end: the first event
	// reaches the client before the upstream sends the last (900 ms
	// later, by the upstream's own clock). A gateway that buffered the
	// stream would deliver it only after the last; the bound does not
	// depend on how loaded the machine is when the call starts.
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "progress", Meta: mcp.Meta{"progressToken": "p1"}, Arguments: map[string]any{"text": ""}}); err != nil {
		t.Fatal(err)
	}
	var at []time.Time
	for deadline := time.Now().Add(2 * time.Second); len(at) < 4 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		pmu.Lock()
		at = append([]time.Time(nil), progressAt...)
		pmu.Unlock()
	}
	up.mu.Lock()
	sent := append([]time.Time(nil), up.sent...)
	up.mu.Unlock()
	if len(at) != 4 || len(sent) != 4 || !at[0].Before(sent[3]) {
		t.Fatalf("progress events received at %v, sent at %v: want 4, the first received before the last was sent", at, sent)
	}

	// The client goes away: the upstream call is cancelled.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	cs.CallTool(cctx, &mcp.CallToolParams{Name: "block", Arguments: map[string]any{"text": ""}})
	cancel()
	select {
	case <-up.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream call was not cancelled")
	}

	// A tool beyond the token's scopes: 403 at the edge (the SDK client
	// then closes that session).
	other := connect(token(mcpURL, "agent", "ci/agent", "files:read"))
	if _, err := other.CallTool(ctx, &mcp.CallToolParams{Name: "write", Arguments: map[string]any{"text": "x"}}); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("write without files:write: %v", err)
	}

	// Refusals at the edge, as a Go server's.
	post := func(tok, path, session string) (int, string) {
		resp := listTools(t, gw, path, tok, session)
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
	}
	if status, ch := post("", "/mcp", ""); status != 401 || !strings.Contains(ch, "resource_metadata=") {
		t.Errorf("no token: %d %q", status, ch)
	}
	if status, ch := post(token("https://other.example.com/mcp", "agent", "ci/agent"), "/mcp", ""); status != 401 || !strings.Contains(ch, `error="invalid_token"`) {
		t.Errorf("another server's token: %d %q", status, ch)
	}
	if status, _ := post("", "/mcp?access_token="+token(mcpURL, "agent", "ci/agent"), ""); status != 400 {
		t.Errorf("a token in the query: %d", status)
	}
	// Another caller cannot use the first one's session.
	var session string // the first client's, still open
	for _, h := range up.seen() {
		if s := h.Get("Mcp-Session-Id"); s != "" && session == "" {
			session = s
		}
	}
	if session == "" {
		t.Fatal("no session seen")
	}
	// The session is bound to the subject and the client each: another
	// subject of the same client, and the same subject through another
	// client, are each refused.
	if status, _ := post(token(mcpURL, "agent", "ci/intruder"), "/mcp", session); status != 403 {
		t.Errorf("another subject of the same client in the session: %d", status)
	}
	if status, _ := post(token(mcpURL, "intruder", "ci/agent"), "/mcp", session); status != 403 {
		t.Errorf("the same subject through another client in the session: %d", status)
	}
	if status, _ := post(token(mcpURL, "agent", "ci/agent"), "/mcp", session); status != 200 {
		t.Errorf("the session's own caller: %d", status)
	}
	// Every refusal at the edge was reported, and only those.
	rmu.Lock()
	var statuses []int
	for _, r := range refused {
		statuses = append(statuses, r.Status)
		if r.Path != "/mcp" || r.SourceIP != "127.0.0.1" {
			t.Errorf("refusal %+v", r)
		}
	}
	rmu.Unlock()
	// Each is reported once its answer is sent, from the connection it
	// came on: compare them in order of status.
	slices.Sort(statuses)
	if fmt.Sprint(statuses) != "[400 401 401 403 403 403]" {
		t.Errorf("refusals reported: %v, want the write (403), no token, another server's token, the token in the query, the session's two intruders", statuses)
	}
	// The metadata is the gateway's own.
	resp, err := gw.Client().Get(gw.URL + "/.well-known/oauth-protected-resource/mcp")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("metadata: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestUpstreamRules(t *testing.T) {
	broker, _ := issuertest.New("https://sts.example.com")
	rs, _ := resource.New(resource.Config{Resource: "https://gw.example.com/mcp", Issuer: broker.URL, Keys: broker})
	for up, want := range map[string]string{
		"http://10.0.0.5:8080/mcp":  "plain http only to a loopback address",
		"https://mcp.internal/mcp":  "https needs the upstream's CA",
		"ftp://127.0.0.1/mcp":       `scheme "ftp"`,
		"unix://":                   "names no socket",
		"http://127.0.0.1:8080/mcp": "",
		"http://[::1]:8080/mcp":     "",
		"unix:///run/mcp.sock":      "",
		"http://localhost:3000/mcp": "",
	} {
		_, err := gateway.New(gateway.Config{Resource: rs, Upstream: up})
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", up, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v, want %q", up, err, want)
		}
	}
}

// TestGatewayTelemetry: a server span per request continues the caller's
// trace and is the upstream's parent; requests are counted by outcome and
// the upstream timed.
func TestGatewayTelemetry(t *testing.T) {
	var mu sync.Mutex
	var upstreamParent string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upstreamParent = r.Header.Get("traceparent")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	defer up.Close()
	spans := tracetest.NewSpanRecorder()
	reader := sdkmetric.NewManualReader()
	gw, broker, _ := serveGateway(t, up.URL+"/mcp", nil, func(gc *gateway.Config) {
		gc.Tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)).Tracer("test")
		gc.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
	})
	tok, _ := broker.Token(gw.URL+"/mcp", "agent", "ci/agent")
	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	send := func(auth string) int {
		req, _ := http.NewRequest(http.MethodPost, gw.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("traceparent", "00-"+trace+"-00f067aa0ba902b7-01")
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := gw.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if send(tok) != 200 || send("") != 401 {
		t.Fatal("statuses")
	}
	// A span ends, and the request is counted, after its answer is sent.
	ended := spans.Ended()
	for deadline := time.Now().Add(2 * time.Second); len(ended) < 2 && time.Now().Before(deadline); ended = spans.Ended() {
		time.Sleep(5 * time.Millisecond)
	}
	// The forwarded request's span (they may end in either order).
	forwarded := slices.IndexFunc(ended, func(s sdktrace.ReadOnlySpan) bool {
		return slices.Contains(s.Attributes(), attribute.String("mcpsts.gateway.outcome", "forwarded"))
	})
	if len(ended) != 2 || forwarded < 0 || ended[forwarded].SpanContext().TraceID().String() != trace || ended[forwarded].Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("spans: %d, the forwarded one at %d", len(ended), forwarded)
	}
	mu.Lock()
	if want := "00-" + trace + "-" + ended[forwarded].SpanContext().SpanID().String() + "-01"; upstreamParent != want {
		t.Errorf("the upstream's traceparent %q, want the gateway's span %q", upstreamParent, want)
	}
	mu.Unlock()
	var rm metricdata.ResourceMetrics
	reader.Collect(context.Background(), &rm)
	counts := map[string]int64{}
	var timed uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					o, _ := p.Attributes.Value("outcome")
					counts[o.AsString()] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					timed += p.Count
				}
			}
		}
	}
	if counts["forwarded"] != 1 || counts["refused"] != 1 || timed != 1 {
		t.Errorf("requests %v, upstream timed %d", counts, timed)
	}
}

// fakeDelegator stands for the broker's delegation exchange.
type fakeDelegator struct {
	mu    sync.Mutex
	calls int
	fail  bool
}

func (f *fakeDelegator) Delegate(_ context.Context, subjectToken, audience string, scopes []string) (*oauth2.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail {
		return nil, errors.New("broker down")
	}
	if subjectToken == "" || audience != "https://upstream.internal/mcp" {
		return nil, errors.New("a wrong delegation")
	}
	return &oauth2.Token{AccessToken: fmt.Sprintf("delegated-%d", f.calls), Expiry: time.Now().Add(10 * time.Minute)}, nil
}

// TestGatewayDelegation: with an upstream audience, the upstream gets a
// token the gateway obtained for it by delegation (kept per caller), never
// the caller's and no X-MCPSTS-* headers; when none can be obtained, 503.
func TestGatewayDelegation(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	defer up.Close()
	del := &fakeDelegator{}
	gw, broker, _ := serveGateway(t, up.URL+"/mcp", func(rc *resource.Config) { rc.Delegator = del },
		func(gc *gateway.Config) { gc.UpstreamAudience = "https://upstream.internal/mcp" })
	tok, _ := broker.Token(gw.URL+"/mcp", "agent", "ci/agent", "files:read")
	send := func() int {
		req, _ := http.NewRequest(http.MethodPost, gw.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := gw.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if send() != 200 || send() != 200 {
		t.Fatal("through the gateway")
	}
	mu.Lock()
	for _, h := range seen {
		if h.Get("Authorization") != "Bearer delegated-1" || h.Get(gateway.HeaderSubject) != "" || strings.Contains(h.Get("Authorization"), tok) {
			t.Errorf("the upstream saw %v", h)
		}
	}
	mu.Unlock()
	if del.calls != 1 {
		t.Errorf("%d delegation exchanges for two requests of one caller, want 1", del.calls)
	}
	del.fail = true
	other, _ := broker.Token(gw.URL+"/mcp", "agent", "ci/agent", "files:read")
	tok = other
	if status := send(); status != 503 {
		t.Errorf("no token for the upstream: %d", status)
	}
}

// TestUnixSocketUpstream: an upstream on a Unix socket (unix:///path.sock,
// its MCP path in ?path=, default /mcp) gets the request and the caller.
func TestUnixSocketUpstream(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "mcp.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("no Unix sockets here: %v", err)
	}
	var got atomic.Value
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.URL.Path + " " + r.Header.Get(gateway.HeaderSubject))
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	gw, broker, _ := serveGateway(t, "unix://"+sock+"?path=/rpc", nil, nil)
	tok, _ := broker.Token(gw.URL+"/mcp", "agent", "ci/agent")
	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := gw.Client().Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("through the socket: %v %v", resp, err)
	}
	resp.Body.Close()
	if got.Load() != "/rpc workload:ci/agent" {
		t.Fatalf("the upstream saw %v", got.Load())
	}
}

// TestRunReloadsToolScopes: Run builds the resource server again when the
// tool-scope file changes and swaps it in; a file that does not build
// leaves the scopes in force.
func TestRunReloadsToolScopes(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	defer up.Close()
	file := filepath.Join(t.TempDir(), "tool-scopes.json")
	os.WriteFile(file, []byte(`{"echo": []}`), 0o600)
	gw, broker, g := serveGateway(t, up.URL+"/mcp", nil, nil)
	build := func() (*resource.Server, error) {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		var scopes map[string][]string
		if err := json.Unmarshal(data, &scopes); err != nil {
			return nil, err
		}
		return resource.New(resource.Config{Resource: gw.URL + "/mcp", Issuer: broker.URL, Keys: broker, ToolScopes: scopes})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The reloader's own signal that it read a file that does not build.
	refused := make(chan struct{}, 8)
	reload := func() (*resource.Server, error) {
		rs, err := build()
		if err != nil {
			refused <- struct{}{}
		}
		return rs, err
	}
	go g.Run(ctx, gateway.Reload{File: file, Every: 20 * time.Millisecond, Build: reload})
	tok, _ := broker.Token(gw.URL+"/mcp", "agent", "ci/agent", "files:read")
	call := func() int {
		req, _ := http.NewRequest(http.MethodPost, gw.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := gw.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := call(); status != 200 {
		t.Fatalf("before the change: %d", status)
	}
	waitStatus := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); call() != want; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %d within 5s", want)
			}
		}
	}
	os.WriteFile(file, []byte(`{"echo": ["files:write"]}`), 0o600)
	waitStatus(403)
	os.WriteFile(file, []byte(`{"echo": `), 0o600) // does not build
	select {
	case <-refused:
	case <-time.After(5 * time.Second):
		t.Fatal("the reloader never read the broken file")
	}
	if status := call(); status != 403 {
		t.Fatalf("after a broken file: %d, want the scopes in force (403)", status)
	}
	os.WriteFile(file, []byte(`{"echo": []}`), 0o600)
	waitStatus(200)
}

// TestRequestBodyForwardedWhole: the gateway reads a request's body whole
// before it goes upstream, so the upstream sees one request with a
// Content-Length even when the client streams its body, and a body that
// the server has closed can never cut the upstream's answer
// (golang/go#40747: under load, an event stream through the gateway was
// dropped in the middle of its answer). A body over the server's bound is
// answered 413 at the edge.
func TestRequestBodyForwardedWhole(t *testing.T) {
	type seen struct {
		at            time.Time
		length        int64
		chunked, body string
	}
	got := make(chan seen, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		got <- seen{at, r.ContentLength, strings.Join(r.TransferEncoding, ","), string(body)}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: message\ndata: {}\n\n")
	}))
	defer up.Close()
	gw, broker, g := serveGateway(t, up.URL+"/mcp", nil, nil)
	tok, err := broker.Token(gw.URL+"/mcp", "agent", "ci/agent")
	if err != nil {
		t.Fatal(err)
	}
	const first, rest = `{"jsonrpc":"2.0","id":1,`, `"method":"tools/list"}`
	pr, pw := io.Pipe()
	sentAt := make(chan time.Time, 1)
	go func() {
		pw.Write([]byte(first))
		time.Sleep(150 * time.Millisecond)
		sentAt <- time.Now()
		pw.Write([]byte(rest))
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/mcp", pr) // no length: sent chunked
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := gw.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(answer) != "event: message\ndata: {}\n\n" {
		t.Fatalf("answer %d %q", resp.StatusCode, answer)
	}
	s, sent := <-got, <-sentAt
	if s.body != first+rest || s.length != int64(len(first+rest)) || s.chunked != "" {
		t.Fatalf("the upstream got %q, Content-Length %d, Transfer-Encoding %q: want the whole body with its length", s.body, s.length, s.chunked)
	}
	if s.at.Before(sent) {
		t.Fatalf("the upstream was called %v before the client finished its body", sent.Sub(s.at))
	}

	// Past the server's bound (tlsserver wraps bodies in MaxBytesReader):
	// 413, and the upstream is not asked.
	rec := httptest.NewRecorder()
	big := httptest.NewRequest(http.MethodPost, gw.URL+"/mcp", strings.NewReader(strings.Repeat("x", 64)))
	big.Header.Set("Authorization", "Bearer "+tok)
	big.Header.Set("Content-Type", "application/json")
	big.Header.Set("Accept", "application/json, text/event-stream")
	big.Body = http.MaxBytesReader(rec, big.Body, 16)
	g.Handler().ServeHTTP(rec, big)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("a body over the bound: %d %s", rec.Code, rec.Body)
	}
	select {
	case s := <-got:
		t.Fatalf("the upstream was asked with %q", s.body)
	default:
	}
}

// TestResponseCapped: a response that is not an event stream is cut at
// MaxResponseBytes: the client never receives more than the bound, and
// never the whole of a larger answer; a smaller one passes whole.
func TestResponseCapped(t *testing.T) {
	size := 64 << 10
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"pad":"`+strings.Repeat("x", size)+`"}}`)
	}))
	defer up.Close()
	gw, broker, _ := serveGateway(t, up.URL+"/mcp", nil, func(c *gateway.Config) { c.MaxResponseBytes = 16 << 10 })
	tok, _ := broker.Token(gw.URL+"/mcp", "agent", "ci/agent")
	get := func() (int, int) {
		req, _ := http.NewRequest(http.MethodPost, gw.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := gw.Client().Do(req)
		if err != nil {
			return 0, 0
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, len(b)
	}
	if _, n := get(); n > 16<<10 {
		t.Fatalf("the client received %d bytes of a %d-byte answer past a 16 KiB bound", n, size)
	}
	size = 1 << 10
	if status, n := get(); status != 200 || n < size {
		t.Fatalf("a small answer: %d, %d bytes", status, n)
	}
}

// TestUpstreamSessionOfAnotherCaller: an upstream that answers one caller
// with a session ID already bound to another caller is refused (its answer
// never reaches the second caller); the first keeps its session.
func TestUpstreamSessionOfAnotherCaller(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Mcp-Session-Id", "the-one-session")
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	defer up.Close()
	gw, broker, _ := serveGateway(t, up.URL+"/mcp", nil, nil)
	call := func(client, sub string) int {
		tok, _ := broker.Token(gw.URL+"/mcp", client, sub)
		req, _ := http.NewRequest(http.MethodPost, gw.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := gw.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && resp.Header.Get("Mcp-Session-Id") != "the-one-session" {
			t.Fatalf("session header %q", resp.Header.Get("Mcp-Session-Id"))
		}
		return resp.StatusCode
	}
	if got := call("agent", "ci/agent"); got != 200 {
		t.Fatalf("the first caller: %d", got)
	}
	if got := call("intruder", "ci/intruder"); got == 200 {
		t.Fatal("another caller was handed the first caller's session")
	}
	if got := call("agent", "ci/agent"); got != 200 {
		t.Fatalf("the first caller again: %d", got)
	}
}

// TestDisguisedHeadersAndUpgrades: a header the gateway sets or checks,
// spelled with '_' (which CGI/WSGI servers read as the real one), is
// refused before the upstream; a request to switch protocols is refused,
// and an upstream that switches anyway is an upstream error.
func TestDisguisedHeadersAndUpgrades(t *testing.T) {
	var reached atomic.Int32
	var switched atomic.Bool
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		for name := range r.Header {
			if n := strings.ToLower(name); strings.Contains(n, "_") && strings.Contains(n, "mcpsts") || strings.Contains(n, "session_id") {
				t.Errorf("the upstream got %s", name)
			}
		}
		if switched.Load() {
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "tunnel")
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusSwitchingProtocols)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	defer up.Close()
	gw, broker, _ := serveGateway(t, up.URL+"/mcp", nil, nil)
	tok, _ := broker.Token(gw.URL+"/mcp", "agent", "ci/agent", "files:read")
	send := func(header map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, gw.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+tok)
		for k, v := range header {
			req.Header[k] = []string{v} // as spelled
		}
		resp, err := gw.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, h := range []map[string]string{
		{"X_MCPSTS_Scopes": "admin files:write"},
		{"x_mcpsts_actor": "workload:ci/gateway"},
		{"X_MCPSTS_SUBJECT": "admin"},
		{"Mcp_Session_Id": "another-callers-session"},
		{"X_Trace_Note": "fine"}, // no name the gateway sets: forwarded
	} {
		before := reached.Load()
		got := send(h)
		_, plain := h["X_Trace_Note"]
		switch {
		case plain && got != 200:
			t.Errorf("%v: %d, want 200 (not a name the gateway sets)", h, got)
		case !plain && (got != 400 || reached.Load() != before):
			t.Errorf("%v: %d (upstream reached %d times more), want 400 before the upstream", h, got, reached.Load()-before)
		}
	}
	// Upgrades: refused at the edge; an upstream's 101 is its error.
	before := reached.Load()
	if got := send(map[string]string{"Connection": "Upgrade", "Upgrade": "websocket"}); got != 400 || reached.Load() != before {
		t.Errorf("an upgrade request: %d, want 400 before the upstream", got)
	}
	switched.Store(true)
	if got := send(nil); got != http.StatusBadGateway {
		t.Errorf("an upstream that switches protocols: %d, want 502", got)
	}
}

// TestUnknownSessions (issue 32): a session ID the gateway does not know
// (after its restart, or forgotten when the table was full) gets 404, as
// the MCP transport answers an unknown session, instead of reaching the
// upstream without an owner check; an upstream that checks sessions
// itself can take them (UpstreamOwnsSessions). The table keeps its bound.
func TestUnknownSessions(t *testing.T) {
	var reached atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		if r.Header.Get("Mcp-Session-Id") == "" {
			w.Header().Set("Mcp-Session-Id", "s-"+strconv.Itoa(int(reached.Load())))
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	defer up.Close()
	for _, owns := range []bool{false, true} {
		gw, broker, _ := serveGateway(t, up.URL+"/mcp", nil, func(c *gateway.Config) { c.Sessions, c.UpstreamOwnsSessions = 2, owns })
		tok, _ := broker.Token(gw.URL+"/mcp", "agent", "ci/agent")
		send := func(session string) (int, string) {
			resp := listTools(t, gw, "/mcp", tok, session)
			return resp.StatusCode, resp.Header.Get("Mcp-Session-Id")
		}
		before := reached.Load()
		status, _ := send("made-up")
		switch {
		case !owns && (status != 404 || reached.Load() != before):
			t.Fatalf("an unknown session: %d (upstream reached %d times), want 404 before the upstream", status, reached.Load()-before)
		case owns && status != 200:
			t.Fatalf("an unknown session, the upstream owning sessions: %d", status)
		}
		// Three sessions in a table of two: the oldest is forgotten.
		var ids []string
		for range 3 {
			_, id := send("")
			ids = append(ids, id)
		}
		if status, _ := send(ids[2]); status != 200 {
			t.Fatalf("a known session: %d", status)
		}
		if status, _ := send(ids[0]); !owns && status != 404 {
			t.Fatalf("the forgotten oldest session: %d, want 404", status)
		}
	}
}

// TestAllowedHosts (issue 32): a request with another Host than the
// resource URL's (a page of another site resolving its name to the
// gateway: DNS rebinding) is refused with 421 without relying on Origin;
// probes by the pod's address pass; AllowedHosts replaces the default.
func TestAllowedHosts(t *testing.T) {
	_, upURL := startUpstream(t)
	for _, tc := range []struct {
		name    string
		allowed []string
		host    string
		path    string
		want    int
	}{
		{"the resource URL's host", nil, "", "/mcp", 401},
		{"another site's name", nil, "rebind.attacker.example", "/mcp", 421},
		{"another site's name, the metadata", nil, "rebind.attacker.example", "/.well-known/oauth-protected-resource/mcp", 421},
		{"a probe by address", nil, "10.1.2.3:8444", "/healthz", 200},
		{"a configured name", []string{"files.internal:8444"}, "FILES.internal:8444", "/mcp", 401},
		{"the resource URL's host when others are configured", []string{"files.internal:8444"}, "", "/mcp", 421},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw, _, _ := serveGateway(t, upURL, nil, func(c *gateway.Config) { c.AllowedHosts = tc.allowed })
			req, _ := http.NewRequest(http.MethodGet, gw.URL+tc.path, nil)
			if tc.path == "/mcp" {
				req, _ = http.NewRequest(http.MethodPost, gw.URL+tc.path, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := gw.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

// TestStreamEndsWithItsToken (issue 32): an event stream lives no longer
// than the token that opened it: at the token's expiry the gateway ends
// it (the client reconnects with a fresh token). The gateway's clock is
// 58 s ahead: the one-minute token (exp in whole seconds) expires one to
// two seconds into the stream.
func TestStreamEndsWithItsToken(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "id: %d\ndata: {}\n\n", i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}))
	defer up.Close()
	gw, broker, _ := serveGateway(t, up.URL+"/mcp", nil, func(c *gateway.Config) {
		c.Clock = func() time.Time { return time.Now().Add(58 * time.Second) }
	})
	tok, err := broker.Mint(context.Background(), issuer.Grant{Subject: "ci/agent", Audience: gw.URL + "/mcp", ClientID: "agent", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/mcp", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok.Raw)
	start := time.Now()
	resp, err := gw.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	done := make(chan int64, 1)
	go func() { n, _ := io.Copy(io.Discard, resp.Body); done <- n }()
	select {
	case n := <-done:
		if took := time.Since(start); n == 0 || took < 900*time.Millisecond || took > 5*time.Second {
			t.Fatalf("the stream ended after %s with %d bytes, want 1 to 2 s", took, n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream outlived its token by 9 s")
	}
}

// TestAdmit (issue 32): a source past its limit gets 429 with Retry-After
// before anything is read, never reaches the upstream, and is not audited
// request by request.
func TestAdmit(t *testing.T) {
	_, upURL := startUpstream(t)
	var refused atomic.Int32
	admitted := atomic.Int32{}
	gw, _, _ := serveGateway(t, upURL, nil, func(c *gateway.Config) {
		c.Admit = func(*http.Request) (bool, time.Duration) { return admitted.Add(1) <= 2, 1500 * time.Millisecond }
		c.Refused = func(gateway.Refusal) { refused.Add(1) }
	})
	var got []int
	for range 4 {
		resp, err := gw.Client().Post(gw.URL+"/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got = append(got, resp.StatusCode)
		if resp.StatusCode == 429 && resp.Header.Get("Retry-After") != "2" {
			t.Errorf("Retry-After %q, want 2", resp.Header.Get("Retry-After"))
		}
	}
	if fmt.Sprint(got) != "[401 401 429 429]" || refused.Load() != 2 {
		t.Fatalf("statuses %v, %d audited, want [401 401 429 429] and 2", got, refused.Load())
	}
}

// listTools posts tools/list to the gateway at path, with the token and
// the session ID when not empty, and returns the answer, its body read.
func listTools(t *testing.T, gw *httptest.Server, path, tok, session string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, gw.URL+path, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	resp, err := gw.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}
