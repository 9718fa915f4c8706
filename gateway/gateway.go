// Package gateway protects an MCP server in any language: a reverse proxy
// for the MCP Streamable HTTP transport that verifies every request with
// the resource package, exactly as a Go server would, and never forwards a
// token. The upstream learns the caller only from headers the gateway sets
// (and overwrites) on every request.
package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/mcpsts/mcpsts/internal/auditvalue"
	"github.com/mcpsts/mcpsts/resource"
)

// Headers the upstream reads the caller from; whatever a client sends under
// these names is dropped.
const (
	HeaderSubject  = "X-MCPSTS-Subject"
	HeaderClientID = "X-MCPSTS-Client-ID"
	HeaderScopes   = "X-MCPSTS-Scopes"
	HeaderActor    = "X-MCPSTS-Actor"
)

// Config wires a gateway.
type Config struct {
	// Resource verifies every request (its Config.Resource is the public
	// MCP URL the gateway answers at).
	Resource *resource.Server
	// Upstream is the MCP server's URL: http on a loopback address, or
	// unix:///path/to/socket[?path=/mcp] for a Unix socket; https when
	// UpstreamTLS is set.
	Upstream string
	// UpstreamTLS trusts the upstream's certificate (https only); nil: the
	// upstream must be loopback or a Unix socket, where no one else can
	// read what the gateway sends it.
	UpstreamTLS *http.Transport
	// MaxResponseBytes bounds a response that is not an event stream
	// (0: 16 MiB); streams flow unbounded, event by event.
	MaxResponseBytes int64
	// Sessions bounds the MCP sessions remembered, each bound to the
	// caller that opened it (0: 100,000). When full, the oldest is
	// forgotten: its next request gets 404, and its client starts a new
	// session, as after a restart of the gateway.
	Sessions int
	// Admit, when set, is asked first, before anything of a request is
	// read: a source past its limit gets 429 with Retry-After (counted as
	// limited, not audited one by one).
	Admit func(r *http.Request) (ok bool, retryAfter time.Duration)
	// AllowedHosts are the Host values requests may carry, host[:port]
	// (default: the resource URL's): any other is refused with 421, so
	// that DNS rebinding is refused without relying on Origin.
	AllowedHosts []string
	// UpstreamOwnsSessions forwards requests with an Mcp-Session-Id the
	// gateway does not know (after its restart, or forgotten) for the
	// upstream to check against their caller (X-MCPSTS-Subject). Off: such
	// a request gets 404, as the MCP transport answers an unknown session.
	UpstreamOwnsSessions bool
	// UpstreamAudience, when set, is the upstream's own resource URI: the
	// gateway then sends the upstream, instead of the X-MCPSTS-* headers, a
	// short-lived token for that audience that it gets for each caller by
	// a delegation exchange (the Resource server's Delegator acting for the
	// caller, recorded in act), for upstreams that verify a JWT themselves.
	// The token is kept for its caller until shortly before it expires.
	UpstreamAudience string
	// Refused, when set, is told of every request refused at the edge
	// (never forwarded): for the audit trail.
	Refused func(Refusal)
	// Tracer records a server span per request, continuing the caller's
	// traceparent and passed on to the upstream; Meter counts requests by
	// outcome and times the upstream. Nil: none.
	Tracer trace.Tracer
	Meter  metric.Meter
	Log    *slog.Logger
	Clock  func() time.Time // nil: time.Now; when a stream's token expires
}

// Refusal is a request the gateway refused before the upstream saw it.
type Refusal struct {
	Time      time.Time
	Method    string
	Path      string
	SourceIP  string
	Status    int
	Challenge string // the WWW-Authenticate header, if any
	TraceID   string // from traceparent, if any
}

// Gateway is the handler.
type Gateway struct {
	cfg          Config
	proxy        *httputil.ReverseProxy
	upstream     *url.URL
	sessions     *sessions
	log          *slog.Logger
	handler      atomic.Pointer[http.Handler]  // the routes of the current resource server
	tokens       *lru.Cache[string, delegated] // the upstream's tokens, by the caller's token ID
	tracer       trace.Tracer
	requests     metric.Int64Counter
	upstreamTime metric.Float64Histogram
}

// New checks cfg and returns the gateway.
func New(cfg Config) (*Gateway, error) {
	if cfg.Resource == nil {
		return nil, errors.New("gateway: a resource server is required")
	}
	target, transport, err := upstream(cfg.Upstream, cfg.UpstreamTLS)
	if err != nil {
		return nil, err
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = 16 << 20
	}
	if cfg.Sessions == 0 {
		cfg.Sessions = 100_000
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Tracer == nil {
		cfg.Tracer = tracenoop.NewTracerProvider().Tracer("")
	}
	if cfg.Meter == nil {
		cfg.Meter = metricnoop.NewMeterProvider().Meter("")
	}
	g := &Gateway{cfg: cfg, upstream: target, sessions: newSessions(cfg.Sessions), log: cfg.Log, tracer: cfg.Tracer}
	g.tokens, _ = lru.New[string, delegated](10_000)
	g.requests, _ = cfg.Meter.Int64Counter("mcpsts.gateway.requests", metric.WithDescription("Requests by outcome: forwarded, refused (at the edge), upstream_error."))
	g.upstreamTime, _ = cfg.Meter.Float64Histogram("mcpsts.gateway.upstream.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to the upstream's response headers."))
	g.proxy = &httputil.ReverseProxy{
		Transport:      transport,
		FlushInterval:  -1, // every write at once: SSE events as they come
		Rewrite:        g.rewrite,
		ModifyResponse: g.modifyResponse,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) {
				return // the client went away; the upstream request is cancelled with it
			}
			g.log.Warn("upstream unavailable", "error", err)
			w.Header().Set("Retry-After", "1")
			http.Error(w, "the MCP server behind this gateway is not answering", http.StatusBadGateway)
		},
	}
	g.SetResource(cfg.Resource)
	return g, nil
}

// SetResource verifies the requests from now on with rs (a resource server
// built again, with tool scopes reloaded, say); sessions stay bound.
func (g *Gateway) SetResource(rs *resource.Server) {
	mux := http.NewServeMux()
	rs.Mount(mux, http.HandlerFunc(g.serve))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { g.ready(w, r, rs) })
	allowed := g.cfg.AllowedHosts
	if len(allowed) == 0 {
		if u, err := url.Parse(rs.Resource()); err == nil {
			allowed = []string{u.Host}
		}
	}
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A page of another site that resolves its own name to this
		// gateway (DNS rebinding) sends its own Host, with or without an
		// Origin. Probes (/healthz, /readyz) come by the pod's address.
		if p := r.URL.Path; p != "/healthz" && p != "/readyz" && !slices.ContainsFunc(allowed, func(a string) bool { return strings.EqualFold(a, r.Host) }) {
			http.Error(w, "the request's Host is not this MCP server's", http.StatusMisdirectedRequest)
			return
		}
		mux.ServeHTTP(w, r)
	})
	g.handler.Store(&h)
}

// upstream parses the upstream URL and returns the transport to reach it.
func upstream(raw string, tlsTransport *http.Transport) (*url.URL, http.RoundTripper, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" && u.Scheme != "unix" {
		return nil, nil, fmt.Errorf("gateway: upstream %q is not a URL (http://127.0.0.1:PORT/mcp or unix:///path.sock)", raw)
	}
	switch u.Scheme {
	case "unix":
		sock := u.Path
		if sock == "" {
			return nil, nil, fmt.Errorf("gateway: upstream %q names no socket", raw)
		}
		path := u.Query().Get("path")
		if path == "" {
			path = "/mcp"
		}
		t := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}
		return &url.URL{Scheme: "http", Host: "unix", Path: path}, t, nil
	case "http":
		ip := net.ParseIP(u.Hostname())
		if (ip == nil || !ip.IsLoopback()) && u.Hostname() != "localhost" {
			return nil, nil, fmt.Errorf("gateway: upstream %q: plain http only to a loopback address (the caller's identity travels in headers); use https with upstream TLS", raw)
		}
		return u, &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}, nil
	case "https":
		if tlsTransport == nil {
			return nil, nil, fmt.Errorf("gateway: upstream %q: https needs the upstream's CA (upstream TLS)", raw)
		}
		return u, tlsTransport, nil
	}
	return nil, nil, fmt.Errorf("gateway: upstream %q: scheme %q is not http, https or unix", raw, u.Scheme)
}

// Handler serves the MCP endpoint (every request verified), the RFC 9728
// metadata, and /healthz and /readyz; it reports each request refused at
// the edge to Config.Refused.
func (g *Gateway) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.cfg.Admit != nil {
			if ok, wait := g.cfg.Admit(r); !ok {
				g.requests.Add(r.Context(), 1, metric.WithAttributes(attribute.String("outcome", "limited")))
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
				http.Error(w, "too many requests from this address; retry later", http.StatusTooManyRequests)
				return
			}
		}
		ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := g.tracer.Start(ctx, "mcpsts.gateway "+r.Method, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
		defer span.End()
		rec := &recorder{ResponseWriter: w}
		fwd := new(bool)
		(*g.handler.Load()).ServeHTTP(rec, r.WithContext(context.WithValue(ctx, forwardedKey{}, fwd)))
		outcome := "forwarded"
		switch {
		case !*fwd && rec.status >= 400:
			outcome = "refused"
			span.SetStatus(codes.Error, "refused")
		case *fwd && rec.status == http.StatusBadGateway:
			outcome = "upstream_error"
			span.SetStatus(codes.Error, "upstream")
		}
		span.SetAttributes(attribute.Int("http.response.status_code", rec.status), attribute.String("mcpsts.gateway.outcome", outcome))
		g.requests.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
		if outcome == "refused" && g.cfg.Refused != nil {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			trace := ""
			if tp := strings.Split(r.Header.Get("traceparent"), "-"); len(tp) == 4 && len(tp[1]) == 32 {
				trace = tp[1]
			}
			// What the request said is bounded as the broker bounds it: a
			// refusal must not grow the log by more than it needs.
			g.cfg.Refused(Refusal{Time: g.cfg.Clock(), Method: auditvalue.Bound(r.Method, 16), Path: auditvalue.Bound(r.URL.Path, auditvalue.Max),
				SourceIP: host, Status: rec.status, Challenge: auditvalue.Bound(w.Header().Get("WWW-Authenticate"), 2*auditvalue.Max), TraceID: auditvalue.Bound(trace, 32)})
		}
	})
}

type forwardedKey struct{}

// recorder notes the status of a response and passes flushes through
// (event streams).
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// ready: the broker's keys are loaded and the upstream accepts connections.
func (g *Gateway) ready(w http.ResponseWriter, r *http.Request, rs *resource.Server) {
	if err := rs.Ready(); err != nil {
		http.Error(w, "broker keys not loaded", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodOptions, g.upstream.String(), nil)
	resp, err := g.proxy.Transport.RoundTrip(req)
	if err != nil {
		http.Error(w, "upstream not answering", http.StatusServiceUnavailable)
		return
	}
	resp.Body.Close()
	io.WriteString(w, "ready\n")
}

// serve runs behind the resource middleware: the caller is verified.
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request) {
	c, ok := resource.CallerFromContext(r.Context())
	if !ok {
		http.Error(w, "unauthenticated", http.StatusUnauthorized)
		return
	}
	if name, bad := disguised(r.Header); bad {
		// Servers that read headers as CGI/WSGI variables take
		// X_MCPSTS_Scopes for X-MCPSTS-Scopes: such a spelling of a name
		// the gateway sets, drops or checks is refused, never forwarded.
		http.Error(w, "the header "+name+" spells a header the gateway sets or checks with '_': refused", http.StatusBadRequest)
		return
	}
	if upgrade(r.Header) {
		http.Error(w, "the MCP Streamable HTTP transport never upgrades the connection", http.StatusBadRequest)
		return
	}
	p := c.Claims.Principal()
	if id := r.Header.Get("Mcp-Session-Id"); id != "" {
		switch owner, known := g.sessions.owner(id); {
		case !known && !g.cfg.UpstreamOwnsSessions:
			http.Error(w, "unknown MCP session: start a new one (initialize without Mcp-Session-Id)", http.StatusNotFound)
			return
		case known && owner != p:
			http.Error(w, "this MCP session belongs to another caller", http.StatusForbidden)
			return
		case known && r.Method == http.MethodDelete:
			defer g.sessions.forget(id)
		}
	}
	if g.cfg.UpstreamAudience != "" {
		tok, err := g.delegate(r.Context(), c)
		if err != nil {
			g.log.Warn("no token for the upstream", "subject", c.Claims.Subject, "error", err)
			w.Header().Set("Retry-After", "1")
			http.Error(w, "the gateway cannot get a token for the MCP server behind it now; retry later", http.StatusServiceUnavailable)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), delegatedKey{}, tok))
	}
	if !readWhole(w, r) {
		return
	}
	if fwd, ok := r.Context().Value(forwardedKey{}).(*bool); ok {
		*fwd = true // past the edge: what follows is the upstream's answer
	}
	trace.SpanFromContext(r.Context()).SetAttributes(attribute.String("mcpsts.subject", c.Claims.Subject), attribute.String("mcpsts.client_id", c.Claims.ClientID))
	g.proxy.ServeHTTP(w, r)
}

// protected reports the headers the gateway sets, removes or checks, by
// their normal name (normalName): a client cannot set them for the
// upstream.
func protected(normal string) bool {
	switch normal {
	case "authorization", "dpop", "cookie", "proxy-authorization",
		"x-mcpsts-subject", "x-mcpsts-client-id", "x-mcpsts-scopes", "x-mcpsts-actor",
		"mcp-session-id", "traceparent", "tracestate":
		return true
	}
	return false
}

// normalName is a header name as servers that map names to CGI/WSGI
// variables read it: lower case, '_' for '-'.
func normalName(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// disguised finds a protected header spelled with '_'.
func disguised(h http.Header) (string, bool) {
	for name := range h {
		if protected(normalName(name)) && strings.Contains(name, "_") {
			return name, true
		}
	}
	return "", false
}

// upgrade reports a request that asks to switch protocols.
func upgrade(h http.Header) bool {
	if len(h.Values("Upgrade")) > 0 {
		return true
	}
	for _, v := range h.Values("Connection") {
		for _, token := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(token), "upgrade") {
				return true
			}
		}
	}
	return false
}

// readWhole replaces the request's body with its bytes, read now (the
// server bounds them: MCP messages are small), and answers the client
// itself when they cannot be read. A body streamed upstream instead races
// the HTTP/1 server: when the upstream's answer starts, the server drains
// and closes the request body, and the transport's last read of a body it
// has already sent then fails and drops the upstream connection, cutting
// an event stream in the middle of its answer (golang/go#40747). A body in
// memory is also one the transport may send again on a fresh connection.
func readWhole(w http.ResponseWriter, r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
			http.Error(w, "the request body is larger than this gateway accepts", http.StatusRequestEntityTooLarge)
			return false
		}
		http.Error(w, "the request body could not be read", http.StatusBadRequest)
		return false
	}
	r.ContentLength, r.TransferEncoding = int64(len(body)), nil
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return true
}

// rewrite sends the request upstream: no credential of the client, the
// caller in the gateway's own headers.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(g.upstream)
	pr.Out.URL.Path, pr.Out.URL.RawPath = g.upstream.Path, ""
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	h := pr.Out.Header
	for name := range h {
		if n := normalName(name); protected(n) && n != "mcp-session-id" {
			delete(h, name) // however it is spelled
		}
	}
	// The upstream's spans are children of the gateway's.
	propagation.TraceContext{}.Inject(pr.In.Context(), propagation.HeaderCarrier(h))
	if tok, ok := pr.In.Context().Value(delegatedKey{}).(string); ok {
		h.Set("Authorization", "Bearer "+tok) // a token for the upstream itself, never the caller's
	} else if c, ok := resource.CallerFromContext(pr.In.Context()); ok {
		h.Set(HeaderSubject, c.Claims.Subject)
		h.Set(HeaderClientID, c.Claims.ClientID)
		h.Set(HeaderScopes, strings.Join(c.Claims.Scopes, " "))
		if c.Claims.Actor != nil {
			h.Set(HeaderActor, c.Claims.Actor.Subject)
		}
	}
	if c, ok := resource.CallerFromContext(pr.In.Context()); ok {
		pr.Out = pr.Out.WithContext(context.WithValue(pr.Out.Context(), principalKey{}, c.Claims.Principal()))
		pr.Out = pr.Out.WithContext(context.WithValue(pr.Out.Context(), expiresKey{}, c.Claims.ExpiresAt))
	}
	pr.Out = pr.Out.WithContext(context.WithValue(pr.Out.Context(), startKey{}, time.Now()))
}

type principalKey struct{}

// expiresKey holds the caller's token's expiry: a stream ends there.
type expiresKey struct{}

type delegatedKey struct{}

// delegated is a token for the upstream, and when to stop using it.
type delegated struct {
	token string
	until time.Time
}

// delegate returns the caller's token for the upstream: kept from an
// earlier request until 30 s before it expires, else exchanged now.
func (g *Gateway) delegate(ctx context.Context, c *resource.Caller) (string, error) {
	key := c.Claims.ID
	if d, ok := g.tokens.Get(key); ok && time.Now().Before(d.until) {
		return d.token, nil
	}
	tok, err := c.Delegate(ctx, g.cfg.UpstreamAudience, c.Claims.Scopes...)
	if err != nil {
		return "", err
	}
	until := tok.Expiry.Add(-30 * time.Second)
	if tok.Expiry.IsZero() {
		until = time.Now().Add(time.Minute)
	}
	g.tokens.Add(key, delegated{token: tok.AccessToken, until: until})
	return tok.AccessToken, nil
}

type startKey struct{}

// modifyResponse binds a new session to its caller and bounds responses
// that are not streams.
func (g *Gateway) modifyResponse(resp *http.Response) error {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return errors.New("the upstream switched protocols: the MCP Streamable HTTP transport never does")
	}
	if start, ok := resp.Request.Context().Value(startKey{}).(time.Time); ok {
		g.upstreamTime.Record(resp.Request.Context(), time.Since(start).Seconds())
	}
	if id := resp.Header.Get("Mcp-Session-Id"); id != "" {
		if p, ok := resp.Request.Context().Value(principalKey{}).(string); ok {
			if owner, known := g.sessions.owner(id); !known {
				g.sessions.bind(id, p)
			} else if owner != p {
				return errors.New("the upstream answered with another caller's session")
			}
		}
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body = &capped{ReadCloser: resp.Body, left: g.cfg.MaxResponseBytes}
		return nil
	}
	// A stream lives no longer than the token that opened it: at its
	// expiry the gateway ends the stream, and the client reconnects with a
	// fresh token (Last-Event-ID resumes it), checked again.
	if exp, ok := resp.Request.Context().Value(expiresKey{}).(time.Time); ok && !exp.IsZero() {
		body := resp.Body
		stop := time.AfterFunc(exp.Sub(g.cfg.Clock()), func() { body.Close() })
		resp.Body = &stopOnClose{ReadCloser: body, stop: stop}
	}
	return nil
}

// stopOnClose stops the stream's expiry timer when the stream ends first.
type stopOnClose struct {
	io.ReadCloser
	stop *time.Timer
}

func (s *stopOnClose) Close() error {
	s.stop.Stop()
	return s.ReadCloser.Close()
}

// capped fails a body past its bound.
type capped struct {
	io.ReadCloser
	left int64
}

func (c *capped) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errors.New("gateway: the upstream's response is larger than allowed")
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.ReadCloser.Read(p)
	c.left -= int64(n)
	return n, err
}

// sessions maps MCP session IDs to their callers, bounded: when full, the
// oldest binding goes.
type sessions struct {
	mu    sync.Mutex
	max   int
	byID  map[string]string
	order []string
}

func newSessions(max int) *sessions { return &sessions{max: max, byID: map[string]string{}} }

func (s *sessions) owner(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.byID[id]
	return p, ok
}

func (s *sessions) bind(id, p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byID[id]; ok {
		return
	}
	for len(s.byID) >= s.max && len(s.order) > 0 {
		delete(s.byID, s.order[0]) // the oldest, or one already forgotten
		s.order = s.order[1:]
	}
	s.byID[id] = p
	s.order = append(s.order, id)
	if len(s.order) > 2*s.max { // sessions forgotten (DELETE) leave their place
		s.order = slices.DeleteFunc(s.order, func(id string) bool { _, ok := s.byID[id]; return !ok })
	}
}

func (s *sessions) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}
