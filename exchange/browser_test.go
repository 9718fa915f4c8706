package exchange_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/exchange/authorize"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/issuer/keystoretest"
	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/consent"
)

// flowEnv is the authorization endpoint with the development login and
// the token endpoint, on one loopback TLS server, over a real store.
type flowEnv struct {
	srv    *httptest.Server
	st     *store.Store
	now    time.Time
	mu     sync.Mutex
	events []string
}

const (
	appID       = "mail-app"
	appCB       = "https://app.example.com/cb"
	appLoopback = "http://127.0.0.1/cb"
	otherApp    = "other-app"
	flowServer  = "https://mail.example.com/mcp"
	flowOther   = "https://other.example.com/mcp"
)

type fixedClients map[string]authorize.Client

func (f fixedClients) BrowserClient(_ context.Context, id string) (authorize.Client, error) {
	c, ok := f[id]
	if !ok {
		return authorize.Client{}, authorize.ErrUnknownClient
	}
	return c, nil
}

// Decision implements the audit log.
func (e *flowEnv) Decision(name string, _ time.Time, _ trace.SpanContext, _ []attribute.KeyValue) error {
	e.mu.Lock()
	e.events = append(e.events, name)
	e.mu.Unlock()
	return nil
}

func (e *flowEnv) audited(name string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.events {
		if ev == name {
			n++
		}
	}
	return n
}

func newFlowEnv(t testing.TB, clients authorize.Clients) *flowEnv {
	t.Helper()
	e := &flowEnv{now: time.Now().Truncate(time.Second)}
	clock := func() time.Time {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.now
	}
	st, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "s.db"), store.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	eng, err := trustmaps.Compile(trustmaps.Document{Name: "people.yaml", Data: []byte(`id: people
match: {provider: corp, subject_pattern: "[a-z]+"}
grant:
  client_id_expr: request.client_id
  audiences: ["` + flowServer + `", "` + flowOther + `"]
  scopes: [mail:read, mail:send]
  default_scopes: [mail:read]
`)})
	if err != nil {
		t.Fatal(err)
	}
	if clients == nil {
		clients = fixedClients{
			appID:    {ID: appID, Name: "Mail App", RedirectURIs: []string{appCB, appLoopback}},
			otherApp: {ID: otherApp, Name: "Other", RedirectURIs: []string{appCB}},
		}
	}
	mux := http.NewServeMux()
	e.srv = httptest.NewUnstartedServer(mux)
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	text, _ := issuer.GenerateKEK()
	kek, _ := issuer.ParseKEK(text)
	iss, err := issuer.New(issuer.Config{Issuer: e.srv.URL, Store: keystoretest.NewMemory(), Local: &issuer.LocalKeys{KEK: kek, Algorithm: issuer.ES256}, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := iss.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ep, err := authorize.New(authorize.Config{Issuer: e.srv.URL, Clients: clients, Decider: eng, Consents: st, Codes: st, Flows: st,
		Login: &authorize.DevLogin{Provider: "corp", Issuer: "https://corp.example"}, Refresh: true, Audit: e, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ep.Patterns() {
		mux.Handle(p, ep)
	}
	mux.Handle("/token", exchange.NewHandler(exchange.Config{Self: []string{e.srv.URL}, Decider: eng, Minter: iss, Tokens: iss,
		Consents: st, Authorizations: st, Audit: e, Clock: clock,
		DPoP: &dpop.Verifier{Replay: &memCache{held: map[string]time.Time{}}, Clock: clock}, TokenURL: e.srv.URL + "/token"}))
	return e
}

func (e *flowEnv) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

// browser is a cookie jar that does not follow redirects.
func (e *flowEnv) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := e.srv.Client()
	return &http.Client{Transport: c.Transport, Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type answer struct {
	status   int
	location *url.URL
	body     string
	from     *url.URL // the page's own address, when a redirect led to it
}

func do(t *testing.T, c *http.Client, method, u string, form url.Values) answer {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, body: string(b)}
	if l := resp.Header.Get("Location"); l != "" {
		a.location, _ = resp.Request.URL.Parse(l)
	}
	return a
}

// request is a good authorization request of the mail app.
func request(challenge string) url.Values {
	return url.Values{"response_type": {"code"}, "client_id": {appID}, "redirect_uri": {appCB}, "state": {"st-123"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "resource": {flowServer}, "scope": {"mail:read offline_access"}}
}

func challengeOf(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// start sends an authorization request and returns the state the
// development login got.
func (e *flowEnv) start(t *testing.T, c *http.Client, q url.Values) string {
	t.Helper()
	a := do(t, c, "GET", e.srv.URL+"/authorize?"+q.Encode(), nil)
	if a.status != http.StatusSeeOther || a.location == nil || a.location.Path != "/login/dev" {
		t.Fatalf("authorize: %d %v %s", a.status, a.location, a.body)
	}
	return a.location.Query().Get("state")
}

// signIn posts the development login and returns the consent form's CSRF
// token (or the redirect, when a consent already covers the request).
func (e *flowEnv) signIn(t *testing.T, c *http.Client, state, user string) (string, answer) {
	t.Helper()
	a := e.follow(t, c, do(t, c, "POST", e.srv.URL+"/login/callback", url.Values{"state": {state}, "user": {user}}))
	if m := csrfField.FindStringSubmatch(a.body); m != nil && a.status == 200 {
		return m[1], a
	}
	return "", a
}

// follow goes where a sign-in or a form sent the browser next, when it is
// a page of this server (the consent screen, the consents list): pages
// after a form are shown at addresses of their own.
func (e *flowEnv) follow(t *testing.T, c *http.Client, a answer) answer {
	t.Helper()
	if a.status != http.StatusSeeOther || a.location == nil || a.location.Host != strings.TrimPrefix(e.srv.URL, "https://") ||
		a.location.Path != "/consent" && a.location.Path != "/consents" {
		return a
	}
	next := do(t, c, "GET", a.location.String(), nil)
	next.from = a.location
	return next
}

// code runs a whole flow, approving, and returns the code.
func (e *flowEnv) code(t *testing.T, c *http.Client, q url.Values) string {
	t.Helper()
	csrf, a := e.signIn(t, c, e.start(t, c, q), "alice")
	if csrf != "" {
		a = do(t, c, "POST", e.srv.URL+"/consent", url.Values{"csrf": {csrf}, "decision": {"approve"}, "duration": {"24h0m0s"}})
	}
	if a.status != http.StatusSeeOther || a.location == nil || a.location.Query().Get("code") == "" {
		t.Fatalf("no code: %d %v %s", a.status, a.location, a.body)
	}
	return a.location.Query().Get("code")
}

// token posts f to the token endpoint, with header's name and value pairs.
func (e *flowEnv) token(t *testing.T, f url.Values, header ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/token", strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func redeemForm(code, verifier string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {appID}, "redirect_uri": {appCB}, "code_verifier": {verifier}}
}

// TestDPoPBoundCodeThroughTheEndpoints: /authorize?dpop_jkt=… binds the
// code it gives to that key (RFC 9449 §10), end to end through the
// authorization endpoint and the token endpoint: redeemed without a proof
// or with another key's, it is refused; with its key's, the token is
// DPoP-bound to it. A dpop_jkt that is no SHA-256 thumbprint is refused at
// the authorization endpoint.
func TestDPoPBoundCodeThroughTheEndpoints(t *testing.T) {
	e := newFlowEnv(t, nil)
	key, _ := dpop.GenerateKey()
	s, _ := dpop.NewSigner(key, func() time.Time { return e.now })
	otherKey, _ := dpop.GenerateKey()
	other, _ := dpop.NewSigner(otherKey, func() time.Time { return e.now })
	redeem := func(code string, signer *dpop.Signer) (int, map[string]any) {
		t.Helper()
		if signer == nil {
			return e.token(t, redeemForm(code, pkceVerifier))
		}
		p, err := signer.Proof(http.MethodPost, e.srv.URL+"/token", "", "")
		if err != nil {
			t.Fatal(err)
		}
		return e.token(t, redeemForm(code, pkceVerifier), "DPoP", p)
	}
	bound := func() string {
		q := request(challengeOf(pkceVerifier))
		q.Set("dpop_jkt", s.JKT())
		return e.code(t, e.browser(), q)
	}
	for _, tc := range []struct {
		name   string
		signer *dpop.Signer
	}{{"no proof", nil}, {"another key's proof", other}} {
		if status, body := redeem(bound(), tc.signer); status != 400 || body["error"] != "invalid_dpop_proof" {
			t.Errorf("a dpop_jkt code, %s: %d %v", tc.name, status, body)
		}
	}
	status, body := redeem(bound(), s)
	if status != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("a dpop_jkt code with its key's proof: %d %v", status, body)
	}
	if got := cnfJKTOf(t, body["access_token"].(string)); got != s.JKT() {
		t.Fatalf("cnf.jkt %q, want %q", got, s.JKT())
	}
	q := request(challengeOf(pkceVerifier))
	q.Set("dpop_jkt", s.JKT()+"A")
	a := do(t, e.browser(), "GET", e.srv.URL+"/authorize?"+q.Encode(), nil)
	if a.location == nil || a.location.Query().Get("error") != "invalid_request" {
		t.Fatalf("a dpop_jkt that is no thumbprint: %d %v", a.status, a.location)
	}
}

// cnfJKTOf reads a token's cnf.jkt (unverified: the token is ours).
func cnfJKTOf(t *testing.T, raw string) string {
	t.Helper()
	var c struct {
		Cnf struct {
			JKT string `json:"jkt"`
		} `json:"cnf"`
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[1])
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c.Cnf.JKT
}

// TestAuthorizationRequestRefusals: a request whose client or redirect URI
// cannot be trusted gets an error page, never a redirect; every other
// error goes back to the registered redirect URI with state and iss.
func TestAuthorizationRequestRefusals(t *testing.T) {
	e := newFlowEnv(t, nil)
	challenge := challengeOf(pkceVerifier)
	pageRows := []struct {
		name string
		mut  func(url.Values)
	}{
		{"redirect URI with an extra query", func(q url.Values) { q.Set("redirect_uri", appCB+"?x=1") }},
		{"redirect URI with an extra path segment", func(q url.Values) { q.Set("redirect_uri", appCB+"/more") }},
		{"redirect URI on another subdomain", func(q url.Values) { q.Set("redirect_uri", "https://evil.app.example.com/cb") }},
		{"redirect URI over http", func(q url.Values) { q.Set("redirect_uri", "http://app.example.com/cb") }},
		{"redirect URI with a trailing slash", func(q url.Values) { q.Set("redirect_uri", appCB+"/") }},
		{"redirect URI in another case", func(q url.Values) { q.Set("redirect_uri", "https://APP.example.com/cb") }},
		{"redirect URI with userinfo", func(q url.Values) { q.Set("redirect_uri", "https://me@app.example.com/cb") }},
		{"redirect URI with a fragment", func(q url.Values) { q.Set("redirect_uri", appCB+"#f") }},
		{"redirect URI of another client", func(q url.Values) { q.Set("client_id", otherApp); q.Set("redirect_uri", appLoopback) }},
		{"no redirect URI", func(q url.Values) { q.Del("redirect_uri") }},
		{"two redirect URIs", func(q url.Values) { q.Add("redirect_uri", appCB) }},
		{"unknown client", func(q url.Values) { q.Set("client_id", "stranger") }},
		{"no client", func(q url.Values) { q.Del("client_id") }},
	}
	for _, tc := range pageRows {
		q := request(challenge)
		tc.mut(q)
		a := do(t, e.browser(), "GET", e.srv.URL+"/authorize?"+q.Encode(), nil)
		if a.status != http.StatusBadRequest || a.location != nil || !strings.Contains(a.body, "You were not sent back to the application") {
			t.Errorf("%s: %d %v, want an error page without redirect", tc.name, a.status, a.location)
		}
	}
	if n := e.audited("authorize.deny"); n != len(pageRows) {
		t.Errorf("%d authorize.deny events, want %d", n, len(pageRows))
	}
	redirectRows := []struct {
		name, code string
		mut        func(url.Values)
	}{
		{"plain PKCE", "invalid_request", func(q url.Values) { q.Set("code_challenge", pkceVerifier); q.Set("code_challenge_method", "plain") }},
		{"no code_challenge", "invalid_request", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }},
		{"implicit flow", "unsupported_response_type", func(q url.Values) { q.Set("response_type", "token") }},
		{"no resource", "invalid_target", func(q url.Values) { q.Del("resource") }},
		{"a resource that is not a URI", "invalid_target", func(q url.Values) { q.Set("resource", "mail") }},
		{"a repeated parameter", "invalid_request", func(q url.Values) { q.Add("scope", "mail:send") }},
		{"too many scopes", "invalid_scope", func(q url.Values) { q.Set("scope", strings.Repeat("mail:read ", 51)) }},
		{"loopback redirect, another port", "unsupported_response_type", func(q url.Values) {
			q.Set("redirect_uri", "http://127.0.0.1:51004/cb")
			q.Set("response_type", "token")
		}},
	}
	for _, tc := range redirectRows {
		q := request(challenge)
		tc.mut(q)
		a := do(t, e.browser(), "GET", e.srv.URL+"/authorize?"+q.Encode(), nil)
		if a.status != http.StatusSeeOther || a.location == nil {
			t.Errorf("%s: %d, want a redirect", tc.name, a.status)
			continue
		}
		got := a.location.Query()
		base := *a.location
		base.RawQuery = ""
		if base.String() != q.Get("redirect_uri") || got.Get("error") != tc.code || got.Get("state") != "st-123" || got.Get("iss") != e.srv.URL || got.Get("code") != "" {
			t.Errorf("%s: redirected to %s, want %s with error=%s, state and iss", tc.name, a.location, q.Get("redirect_uri"), tc.code)
		}
	}
	// A POST whose body is no form (here: over 64 KiB) gets a page, not
	// the parameters of its query.
	big := e.srv.URL + "/authorize?" + request(challenge).Encode()
	if a := do(t, e.browser(), "POST", big, url.Values{"pad": {strings.Repeat("x", 70<<10)}}); a.status != http.StatusBadRequest || a.location != nil ||
		!strings.Contains(a.body, "The request could not be read.") {
		t.Errorf("an oversized POST: %d %v", a.status, a.location)
	}
	// A state over 1 KiB is not kept (nor echoed).
	long := request(challenge)
	long.Set("state", strings.Repeat("s", 1025))
	if a := do(t, e.browser(), "GET", e.srv.URL+"/authorize?"+long.Encode(), nil); a.status != http.StatusSeeOther ||
		a.location.Query().Get("error") != "invalid_request" || a.location.Query().Has("state") || a.location.Query().Get("iss") != e.srv.URL {
		t.Errorf("a long state: %d %v", a.status, a.location)
	}
	// POST works as GET does (OAuth 2.1 §4.1.1).
	var q url.Values
	var b *http.Client
	a := do(t, e.browser(), "POST", e.srv.URL+"/authorize", request(challenge))
	if a.status != http.StatusSeeOther || a.location.Path != "/login/dev" {
		t.Errorf("POST /authorize: %d %v", a.status, a.location)
	}
	// Scopes beyond the maps beside granted ones are narrowed away: the
	// consent screen and the code hold only what the maps grant.
	q = request(challengeOf(pkceVerifier))
	q.Set("scope", "mail:read mail:delete")
	b = e.browser()
	csrf, page := e.signIn(t, b, e.start(t, b, q), "dora")
	if csrf == "" || !strings.Contains(page.body, "mail:read") || strings.Contains(page.body, "mail:delete") {
		t.Errorf("narrowed request: consent page %d:\n%s", page.status, page.body)
	}
	// The trust maps decide after sign-in: a scope beyond them.
	q = request(challenge)
	q.Set("scope", "mail:delete")
	b = e.browser()
	_, ans := e.signIn(t, b, e.start(t, b, q), "alice")
	if ans.location == nil || ans.location.Query().Get("error") != "invalid_scope" || ans.location.Query().Get("iss") != e.srv.URL {
		t.Errorf("a scope beyond the maps: %d %v", ans.status, ans.location)
	}
	// Several scopes, none of them granted: narrowing finds nothing and
	// the answer is invalid_scope, never the map's default scopes.
	q = request(challenge)
	q.Set("scope", "mail:delete mail:admin")
	b = e.browser()
	_, ans = e.signIn(t, b, e.start(t, b, q), "alice")
	if ans.location == nil || ans.location.Query().Get("error") != "invalid_scope" {
		t.Errorf("several scopes beyond the maps: %d %v", ans.status, ans.location)
	}
}

// TestFlowState: the state of the sign-in and the consent form's token
// are single use, short-lived and bound to the browser's cookie; anything
// else is an error page and a login.csrf audit event.
func TestFlowState(t *testing.T) {
	e := newFlowEnv(t, nil)
	q := request(challengeOf(pkceVerifier))
	for _, tc := range []struct {
		name string
		run  func(t *testing.T) answer
	}{
		{"missing state", func(t *testing.T) answer {
			b := e.browser()
			e.start(t, b, q)
			return do(t, b, "POST", e.srv.URL+"/login/callback", url.Values{"user": {"alice"}})
		}},
		{"unknown state", func(t *testing.T) answer {
			b := e.browser()
			e.start(t, b, q)
			return do(t, b, "POST", e.srv.URL+"/login/callback", url.Values{"state": {authorize.Random(32)}, "user": {"alice"}})
		}},
		{"reused state", func(t *testing.T) answer {
			b := e.browser()
			state := e.start(t, b, q)
			e.signIn(t, b, state, "alice")
			return do(t, b, "POST", e.srv.URL+"/login/callback", url.Values{"state": {state}, "user": {"alice"}})
		}},
		{"another browser's state (login CSRF)", func(t *testing.T) answer {
			state := e.start(t, e.browser(), q)
			return do(t, e.browser(), "POST", e.srv.URL+"/login/callback", url.Values{"state": {state}, "user": {"mallory"}})
		}},
		{"expired state", func(t *testing.T) answer {
			b := e.browser()
			state := e.start(t, b, q)
			e.advance(authorize.FlowTTL + time.Second)
			return do(t, b, "POST", e.srv.URL+"/login/callback", url.Values{"state": {state}, "user": {"alice"}})
		}},
		{"reused consent form", func(t *testing.T) answer {
			b := e.browser()
			csrf, _ := e.signIn(t, b, e.start(t, b, q), "bob")
			do(t, b, "POST", e.srv.URL+"/consent", url.Values{"csrf": {csrf}, "decision": {"deny"}})
			return do(t, b, "POST", e.srv.URL+"/consent", url.Values{"csrf": {csrf}, "decision": {"approve"}})
		}},
		{"another browser's consent form (CSRF)", func(t *testing.T) answer {
			b := e.browser()
			csrf, _ := e.signIn(t, b, e.start(t, b, q), "carol")
			return do(t, e.browser(), "POST", e.srv.URL+"/consent", url.Values{"csrf": {csrf}, "decision": {"approve"}})
		}},
		{"consent form without token", func(t *testing.T) answer {
			return do(t, e.browser(), "POST", e.srv.URL+"/consent", url.Values{"decision": {"approve"}})
		}},
		{"the state used as the consent token", func(t *testing.T) answer {
			b := e.browser()
			state := e.start(t, b, q)
			return do(t, b, "POST", e.srv.URL+"/consent", url.Values{"csrf": {state}, "decision": {"approve"}})
		}},
	} {
		before := e.audited("login.csrf")
		a := tc.run(t)
		if a.status != http.StatusBadRequest || a.location != nil || !strings.Contains(a.body, "This sign-in link is not valid") {
			t.Errorf("%s: %d %v, want the bad-state page", tc.name, a.status, a.location)
		}
		if e.audited("login.csrf") != before+1 {
			t.Errorf("%s: not audited as login.csrf", tc.name)
		}
	}
	// The cookie is __Host-, Secure, HttpOnly, SameSite=Lax.
	resp, err := e.browser().Get(e.srv.URL + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := resp.Header.Get("Set-Cookie"); !strings.HasPrefix(c, authorize.CookieName+"=") || !strings.Contains(c, "Path=/") ||
		!strings.Contains(c, "HttpOnly") || !strings.Contains(c, "Secure") || !strings.Contains(c, "SameSite=Lax") {
		t.Errorf("Set-Cookie: %s", c)
	}
}

// TestConsentPage: the consent screen's headers, and its decisions.
func TestConsentPage(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser()
	_, a := e.signIn(t, b, e.start(t, b, request(challengeOf(pkceVerifier))), "alice")
	for _, want := range []string{"Mail App", appID, "app.example.com", flowServer, "mail:read", `name="csrf"`, "Each access token it gets lives 15 minutes."} {
		if !strings.Contains(a.body, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	if strings.Contains(a.body, "runs on your computer") {
		t.Error("a client with an https redirect URI warned as loopback-only")
	}
	// The screen is at an address of its own, not the sign-in's callback
	// (issue 38): a reload shows it again, with the same form; once the
	// form is sent, the address is used.
	if a.from == nil || a.from.Path != "/consent" || a.from.Query().Get("page") == "" {
		t.Fatalf("the consent screen's address: %v", a.from)
	}
	again := do(t, b, "GET", a.from.String(), nil)
	if m := csrfField.FindStringSubmatch(again.body); again.status != 200 || m == nil || m[1] != csrfField.FindStringSubmatch(a.body)[1] {
		t.Fatalf("reloading the consent screen: %d", again.status)
	}
	if other := do(t, e.browser(), "GET", a.from.String(), nil); other.status != http.StatusBadRequest || strings.Contains(other.body, "csrf") {
		t.Fatalf("the consent screen's address in another browser: %d", other.status)
	}
	forged := *a.from
	forged.RawQuery = url.Values{"page": {"x" + a.from.Query().Get("page")}}.Encode()
	if other := do(t, b, "GET", forged.String(), nil); other.status != http.StatusBadRequest {
		t.Fatalf("another page key: %d", other.status)
	}
	if d := do(t, b, "POST", e.srv.URL+"/consent", url.Values{"csrf": {csrfField.FindStringSubmatch(a.body)[1]}, "decision": {"deny"}}); d.location == nil {
		t.Fatalf("deny: %d", d.status)
	}
	if used := do(t, b, "GET", a.from.String(), nil); used.status != http.StatusBadRequest {
		t.Fatalf("reloading a consent screen already answered: %d", used.status)
	}

	// Headers, read on a fresh page.
	b2 := e.browser()
	state := e.start(t, b2, request(challengeOf(pkceVerifier)))
	signedIn := do(t, b2, "POST", e.srv.URL+"/login/callback", url.Values{"state": {state}, "user": {"alice"}})
	if signedIn.status != http.StatusSeeOther || signedIn.location == nil || signedIn.location.Path != "/consent" {
		t.Fatalf("after sign-in: %d %v", signedIn.status, signedIn.location)
	}
	req, _ := http.NewRequest("GET", signedIn.location.String(), nil)
	req.Header.Set("Accept-Language", "fr-CH, fr;q=0.9, en;q=0.8")
	resp, err := b2.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	h := resp.Header
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") ||
		!strings.Contains(csp, "form-action 'self' https://app.example.com") || strings.Contains(csp, "unsafe") {
		t.Errorf("Content-Security-Policy: %s", csp)
	}
	if h.Get("X-Frame-Options") != "DENY" || h.Get("Cache-Control") != "no-store" || h.Get("Content-Language") != "fr" {
		t.Errorf("headers: %v", h)
	}
	if !strings.Contains(string(body), "Mail App demande un accès") || !strings.Contains(string(body), `lang="fr"`) || !strings.Contains(string(body), "vit 15 minutes.") {
		t.Errorf("the page is not in French for a French browser")
	}
	if strings.Contains(string(body), "<script") {
		t.Error("the consent page has a script: it must work without JavaScript")
	}
}

// TestCodeRefusals: the negative table of the token endpoint's browser
// grants, on codes and refresh tokens the endpoint really issued.
func TestCodeRefusals(t *testing.T) {
	e := newFlowEnv(t, nil)
	verifier := authorize.Random(32)
	q := request(challengeOf(verifier))
	fresh := func() string { return e.code(t, e.browser(), q) }

	good := fresh()
	status, tok := e.token(t, redeemForm(good, verifier))
	if status != 200 || tok["refresh_token"] == nil {
		t.Fatalf("redeem: %d %v", status, tok)
	}
	refresh := tok["refresh_token"].(string)
	for _, tc := range []struct {
		name, code, desc string
		form             func() url.Values
	}{
		{"wrong verifier", "invalid_grant", "code_verifier does not match the code_challenge", func() url.Values { return redeemForm(fresh(), pkceVerifier) }},
		{"missing verifier", "invalid_grant", authorize.ErrPKCEVerifier.Error(), func() url.Values { return redeemForm(fresh(), "") }},
		{"another client", "invalid_grant", "the authorization code was issued to another client", func() url.Values {
			f := redeemForm(fresh(), verifier)
			f.Set("client_id", otherApp)
			return f
		}},
		{"another redirect URI", "invalid_grant", "redirect_uri is not the one of the authorization request", func() url.Values {
			f := redeemForm(fresh(), verifier)
			f.Set("redirect_uri", appLoopback)
			return f
		}},
		{"another resource", "invalid_target", "the grant is for another resource", func() url.Values {
			f := redeemForm(fresh(), verifier)
			f.Set("resource", flowOther)
			return f
		}},
		{"expired code", "invalid_grant", "the authorization code has expired", func() url.Values {
			f := redeemForm(fresh(), verifier)
			e.advance(authorize.CodeTTL)
			return f
		}},
		{"unknown code", "invalid_grant", "the authorization code is not valid", func() url.Values { return redeemForm(authorize.Random(32), verifier) }},
		{"refresh by another client", "invalid_grant", "the refresh token was issued to another client", func() url.Values {
			_, tok := e.token(t, redeemForm(fresh(), verifier))
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}, "client_id": {otherApp}}
		}},
	} {
		status, body := e.token(t, tc.form())
		if status != 400 || body["error"] != tc.code || body["error_description"] != tc.desc {
			t.Errorf("%s: %d %v, want 400 %s %q", tc.name, status, body, tc.code, tc.desc)
		}
	}

	// A second use of the code fails and revokes what the first gave.
	status, body := e.token(t, redeemForm(good, verifier))
	if status != 400 || body["error"] != "invalid_grant" || body["error_description"] != "the authorization code was already used; the tokens it gave are revoked" {
		t.Fatalf("reused code: %d %v", status, body)
	}
	status, body = e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {appID}})
	if status != 400 || body["error"] != "invalid_grant" || body["error_description"] != "the refresh token is not valid" {
		t.Fatalf("refresh after the code's reuse: %d %v", status, body)
	}

	// Refresh rotation; reuse of a rotated token revokes the family.
	_, tok = e.token(t, redeemForm(fresh(), verifier))
	first := tok["refresh_token"].(string)
	status, tok = e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first}, "client_id": {appID}})
	if status != 200 || tok["refresh_token"] == nil || tok["refresh_token"] == first {
		t.Fatalf("rotation: %d %v", status, tok)
	}
	second := tok["refresh_token"].(string)
	status, body = e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first}, "client_id": {appID}})
	if status != 400 || body["error_description"] != "the refresh token was already used; its grant is revoked" {
		t.Fatalf("refresh reuse: %d %v", status, body)
	}
	status, body = e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {second}, "client_id": {appID}})
	if status != 400 || body["error_description"] != "the refresh token is not valid" {
		t.Fatalf("the family's newest after reuse: %d %v", status, body)
	}
	if e.audited("token.deny") == 0 {
		t.Error("no token.deny audited")
	}
}

// TestOfflineAccessNeedsConsent: a refresh token only when offline_access
// was asked for (and consented).
func TestOfflineAccessNeedsConsent(t *testing.T) {
	e := newFlowEnv(t, nil)
	verifier := authorize.Random(32)
	q := request(challengeOf(verifier))
	q.Set("scope", "mail:read")
	status, tok := e.token(t, redeemForm(e.code(t, e.browser(), q), verifier))
	if status != 200 || tok["refresh_token"] != nil || tok["access_token"] == nil {
		t.Fatalf("without offline_access: %d %v", status, tok)
	}
	cs, _ := e.st.Consents(context.Background(), "corp", "alice", appID)
	if len(cs) != 1 || fmt.Sprint(cs[0].Scopes) != "[mail:read]" || !cs[0].ExpiresAt.Equal(e.now.Add(24*time.Hour)) {
		t.Fatalf("consent %+v", cs)
	}
}

// TestClientMetadataDocumentClients: a client whose ID is its metadata
// document's URL starts a flow when the document checks out; a document
// naming another client_id, one that redirects, an oversized one, or one
// on a private address (SSRF) gets the error page, never a redirect.
func TestClientMetadataDocumentClients(t *testing.T) {
	docs := http.NewServeMux()
	site := httptest.NewTLSServer(docs)
	defer site.Close()
	doc := func(id string, extra string) string {
		return fmt.Sprintf(`{"client_id": %q, "client_name": "Doc App", "redirect_uris": [%q]%s}`, id, appCB, extra)
	}
	docs.HandleFunc("/good.json", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, doc(site.URL+"/good.json", "")) })
	docs.HandleFunc("/other.json", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, doc(site.URL+"/good.json", "")) })
	docs.HandleFunc("/moved.json", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/good.json", http.StatusFound) })
	docs.HandleFunc("/big.json", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, doc(site.URL+"/big.json", `, "scope": "`+strings.Repeat("x", 20<<10)+`"`))
	})
	public := exchange.NewClientMetadataDocuments(exchange.ClientMetadataOptions{Transport: site.Client().Transport})
	private := exchange.NewClientMetadataDocuments(exchange.ClientMetadataOptions{Transport: site.Client().Transport, AllowPrivateAddresses: true})
	for _, tc := range []struct {
		name, path string
		docs       *exchange.ClientMetadataDocuments
		ok         bool
	}{
		{"a good document", "/good.json", private, true},
		{"a document naming another client_id", "/other.json", private, false},
		{"a document that redirects", "/moved.json", private, false},
		{"an oversized document", "/big.json", private, false},
		{"a document on a private address", "/good.json", public, false},
	} {
		e := newFlowEnv(t, exchange.BrowserClients{Registry: registry{}, Documents: tc.docs})
		q := request(challengeOf(pkceVerifier))
		q.Set("client_id", site.URL+tc.path)
		a := do(t, e.browser(), "GET", e.srv.URL+"/authorize?"+q.Encode(), nil)
		switch {
		case tc.ok && (a.status != http.StatusSeeOther || a.location.Path != "/login/dev"):
			t.Errorf("%s: %d %v, want the sign-in", tc.name, a.status, a.location)
		case !tc.ok && (a.status != http.StatusBadRequest || a.location != nil || !strings.Contains(a.body, "not known to this server")):
			t.Errorf("%s: %d %v, want the unknown-client page", tc.name, a.status, a.location)
		}
	}
	// The consent screen of a document client seen for the first time
	// warns that its name is its own.
	e := newFlowEnv(t, exchange.BrowserClients{Documents: private})
	q := request(challengeOf(pkceVerifier))
	q.Set("client_id", site.URL+"/good.json")
	b := e.browser()
	_, a := e.signIn(t, b, e.start(t, b, q), "alice")
	if !strings.Contains(a.body, "You have never approved this application before") || !strings.Contains(a.body, "Doc App") {
		t.Errorf("first-time document client: no warning:\n%s", a.body)
	}
}

// TestDynamicRegistration: RFC 7591 for public clients only, exact
// redirect URIs, rate-limited; the client it gives starts a flow.
func TestDynamicRegistration(t *testing.T) {
	reg := &memRegistrar{clients: map[string]exchange.Client{}}
	e := newFlowEnv(t, exchange.BrowserClients{Registry: reg})
	now := time.Now()
	h := exchange.RegistrationHandler(exchange.RegistrationConfig{Clients: reg, PerSource: exchange.RateLimit{Rate: 1.0 / 60, Burst: 4}, Audit: e,
		Clock: func() time.Time { return now }})
	post := func(body string) (int, map[string]any) {
		r := httptest.NewRequest("POST", "https://sts.example/register", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var m map[string]any
		json.Unmarshal(w.Body.Bytes(), &m)
		return w.Code, m
	}
	for _, tc := range []struct{ name, body, code string }{
		{"a confidential client", `{"redirect_uris": ["https://app.example.com/cb"], "token_endpoint_auth_method": "client_secret_basic"}`, "invalid_client_metadata"},
		{"an http redirect URI", `{"redirect_uris": ["http://app.example.com/cb"]}`, "invalid_redirect_uri"},
		{"a wildcard", `{"redirect_uris": ["https://*.example.com/cb"]}`, "invalid_redirect_uri"},
	} {
		if status, body := post(tc.body); status != 400 || body["error"] != tc.code {
			t.Errorf("%s: %d %v, want 400 %s", tc.name, status, body, tc.code)
		}
	}
	// More refusals, at a handler of their own (the per-source limit
	// above counts its burst).
	unlimited := exchange.RegistrationHandler(exchange.RegistrationConfig{Clients: reg, PerSource: exchange.RateLimit{Rate: 100, Burst: 100}, Clock: func() time.Time { return now }})
	for _, tc := range []struct{ name, body, code string }{
		// Plain http only on loopback, an IP literal included.
		{"an http redirect URI on a private IP literal", `{"redirect_uris": ["http://192.168.1.5:8080/cb"]}`, "invalid_redirect_uri"},
		{"an http redirect URI on a public IP literal", `{"redirect_uris": ["http://203.0.113.7/cb"]}`, "invalid_redirect_uri"},
		// A host that is neither a DNS name nor an IP without a zone would
		// land in the consent page's CSP (issue 32): a zone holding a CSP
		// directive, user information, a form that does not re-serialise.
		{"an IPv6 zone carrying a CSP directive", `{"redirect_uris": ["https://[fe80::1%25;frame-ancestors%20https:;]/cb"]}`, "invalid_redirect_uri"},
		{"an IPv6 zone", `{"redirect_uris": ["https://[fe80::1%25eth0]/cb"]}`, "invalid_redirect_uri"},
		{"user information", `{"redirect_uris": ["https://user@app.example.com/cb"]}`, "invalid_redirect_uri"},
		{"a host with a space", `{"redirect_uris": ["https://app%20x.example.com/cb"]}`, "invalid_redirect_uri"},
		{"not in its one written form", `{"redirect_uris": ["HTTPS://app.example.com/cb"]}`, "invalid_redirect_uri"},
		// A client name is one line of text, never markup.
		{"a client name on two lines", `{"client_name": "Mail\nApp", "redirect_uris": ["https://app.example.com/cb"]}`, "invalid_client_metadata"},
		{"a client name with markup", `{"client_name": "<b>Mail</b>", "redirect_uris": ["https://app.example.com/cb"]}`, "invalid_client_metadata"},
		{"a client name with a NUL", `{"client_name": "Mail\u0000App", "redirect_uris": ["https://app.example.com/cb"]}`, "invalid_client_metadata"},
		// Issue 32: names that read as another's.
		{"a client name with a bidi override", `{"client_name": "Mail \u202eppA", "redirect_uris": ["https://app.example.com/cb"]}`, "invalid_client_metadata"},
		{"a client name with a zero-width joiner", `{"client_name": "Ma\u200dil App", "redirect_uris": ["https://app.example.com/cb"]}`, "invalid_client_metadata"},
		{"a registered client's name", `{"client_name": "Claude Desktop", "redirect_uris": ["https://app.attacker.example/cb"]}`, "invalid_client_metadata"},
		{"a registered client's name in other letter case and spacing", `{"client_name": "claude  DESKTOP", "redirect_uris": ["https://app.attacker.example/cb"]}`, "invalid_client_metadata"},
		{"a registered client's name in look-alike letters", `{"client_name": "\u0421IaudeDeskt\u043ep", "redirect_uris": ["https://app.attacker.example/cb"]}`, "invalid_client_metadata"},
	} {
		r := httptest.NewRequest("POST", "https://sts.example/register", strings.NewReader(tc.body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		unlimited.ServeHTTP(w, r)
		var m map[string]any
		json.Unmarshal(w.Body.Bytes(), &m)
		if w.Code != 400 || m["error"] != tc.code {
			t.Errorf("%s: %d %v, want 400 %s", tc.name, w.Code, m, tc.code)
		}
	}
	status, body := post(`{"client_name": "Registered", "redirect_uris": ["` + appCB + `"]}`)
	if status != 201 || body["client_secret"] != nil || body["token_endpoint_auth_method"] != "none" || !strings.HasPrefix(fmt.Sprint(body["client_id"]), "dcr-") {
		t.Fatalf("registration: %d %v", status, body)
	}
	if status, body := post(`{"redirect_uris": ["` + appCB + `"]}`); status != 429 || body["error"] != "slow_down" {
		t.Errorf("past the rate limit: %d %v", status, body)
	}
	if e.audited("client.register") != 1 || e.audited("client.register_refused") != 4 {
		t.Errorf("audit: %v", e.events)
	}
	q := request(challengeOf(pkceVerifier))
	q.Set("client_id", body["client_id"].(string))
	if a := do(t, e.browser(), "GET", e.srv.URL+"/authorize?"+q.Encode(), nil); a.status != http.StatusSeeOther || a.location.Path != "/login/dev" {
		t.Errorf("the registered client's flow: %d %v", a.status, a.location)
	}
}

// TestRegistrationCaps (issue 32): besides the per-source limit, a rate
// for every source together and a cap on the clients registered
// dynamically; a registration records when it was made.
func TestRegistrationCaps(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	post := func(h http.Handler, source string) (int, map[string]any, http.Header) {
		r := httptest.NewRequest("POST", "https://sts.example/register", strings.NewReader(`{"redirect_uris": ["`+appCB+`"]}`))
		r.RemoteAddr = source + ":40000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var m map[string]any
		json.Unmarshal(w.Body.Bytes(), &m)
		return w.Code, m, w.Header()
	}
	reg := &memRegistrar{clients: map[string]exchange.Client{}}
	many := exchange.RateLimit{Rate: 100, Burst: 100}
	// Three an hour from all sources together: the fourth, from a fourth
	// address, waits.
	h := exchange.RegistrationHandler(exchange.RegistrationConfig{Clients: reg, PerSource: many, Overall: exchange.RateLimit{Rate: 3.0 / 3600, Burst: 3},
		MaxClients: 100, Clock: func() time.Time { return now }})
	for i := range 3 {
		if status, body, _ := post(h, fmt.Sprintf("198.51.100.%d", i+1)); status != 201 {
			t.Fatalf("registration %d: %d %v", i+1, status, body)
		}
	}
	status, body, hdr := post(h, "198.51.100.9")
	if status != 429 || body["error"] != "slow_down" || hdr.Get("Retry-After") == "" {
		t.Fatalf("past the overall rate: %d %v %v", status, body, hdr)
	}
	for id, c := range reg.clients {
		if c.RegisteredAt != now.Unix() || c.FirstUsedAt != 0 {
			t.Errorf("client %s: registered_at %d, first_used_at %d", id, c.RegisteredAt, c.FirstUsedAt)
		}
	}
	// A cap of 4 dynamic clients (an administrator's does not count).
	reg.clients["admins"] = exchange.Client{ID: "admins", GrantTypes: []string{"authorization_code"}}
	capped := exchange.RegistrationHandler(exchange.RegistrationConfig{Clients: reg, PerSource: many, Overall: many, MaxClients: 4,
		Clock: func() time.Time { return now }})
	if status, body, _ := post(capped, "203.0.113.1"); status != 201 {
		t.Fatalf("the fourth client: %d %v", status, body)
	}
	status, body, hdr = post(capped, "203.0.113.2")
	if status != 503 || body["error"] != "temporarily_unavailable" || hdr.Get("Retry-After") != "60" {
		t.Fatalf("past the cap: %d %v %v", status, body, hdr)
	}
	if n := reg.DynamicClients(); n != 4 {
		t.Fatalf("%d dynamic clients, want the cap 4", n)
	}
}

type memRegistrar struct {
	mu      sync.Mutex
	clients map[string]exchange.Client
}

// DynamicClients implements the count the cap reads.
func (m *memRegistrar) DynamicClients() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for id := range m.clients {
		if strings.HasPrefix(id, exchange.DynamicClientPrefix) {
			n++
		}
	}
	return n
}

func (m *memRegistrar) RegisterClient(_ context.Context, c exchange.Client) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clients[c.ID] = c
	return nil
}

// RegisteredNames implements the names an administrator's clients hold.
func (m *memRegistrar) RegisteredNames() []string { return []string{"Claude Desktop"} }

func (m *memRegistrar) Client(_ context.Context, id string) (exchange.Client, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.clients[id]
	return c, ok, nil
}

// TestConsentAnswersAndWithdrawal: only "approve" approves, a consent lasts
// one of the offered durations only, the consents page takes its own
// form's token only, and withdrawing a consent there revokes the refresh
// tokens it allowed.
func TestConsentAnswersAndWithdrawal(t *testing.T) {
	e := newFlowEnv(t, nil)
	ctx := context.Background()
	consentForm := func(t *testing.T) (*http.Client, string) {
		t.Helper()
		b := e.browser()
		csrf, a := e.signIn(t, b, e.start(t, b, request(challengeOf(pkceVerifier))), "erin")
		if csrf == "" {
			t.Fatalf("no consent form: %d %s", a.status, a.body)
		}
		return b, csrf
	}
	for _, decision := range []string{"", "maybe", "APPROVE", "approved", "deny"} {
		b, csrf := consentForm(t)
		a := do(t, b, "POST", e.srv.URL+"/consent", url.Values{"csrf": {csrf}, "decision": {decision}})
		if a.location == nil || a.location.Query().Get("error") != "access_denied" || a.location.Query().Get("code") != "" {
			t.Fatalf("decision %q: %d %v, want access_denied", decision, a.status, a.location)
		}
	}
	if cs, err := e.st.Consents(ctx, "corp", "erin", appID); err != nil || len(cs) != 0 {
		t.Fatalf("consents after refusals: %v %v", cs, err)
	}
	for _, tc := range []struct {
		duration string
		want     time.Duration
	}{{"1h0m0s", time.Hour}, {"8760h0m0s", 30 * 24 * time.Hour}, {"-1h", 30 * 24 * time.Hour}} {
		b, csrf := consentForm(t)
		a := do(t, b, "POST", e.srv.URL+"/consent", url.Values{"csrf": {csrf}, "decision": {"approve"}, "duration": {tc.duration}})
		if a.location == nil || a.location.Query().Get("code") == "" {
			t.Fatalf("approve for %s: %d %v", tc.duration, a.status, a.location)
		}
		cs, err := e.st.Consents(ctx, "corp", "erin", appID)
		active := slices.DeleteFunc(cs, func(c consent.Consent) bool { return !c.Active(e.now) })
		if err != nil || len(active) != 1 {
			t.Fatalf("active consents %v: %v", active, err)
		}
		if got := active[0].ExpiresAt.Sub(e.now); got != tc.want {
			t.Fatalf("duration %s gave a consent of %s, want %s", tc.duration, got, tc.want)
		}
		for _, c := range cs {
			e.st.RevokeConsent(ctx, c.ID)
		}
	}

	// A refresh token under a consent, then the consents page.
	code := e.code(t, e.browser(), request(challengeOf(pkceVerifier)))
	status, tok := e.token(t, redeemForm(code, pkceVerifier))
	if status != 200 || tok["refresh_token"] == nil {
		t.Fatalf("redeem: %d %v", status, tok)
	}
	refresh := tok["refresh_token"].(string)
	cs, err := e.st.Consents(ctx, "corp", "alice", appID)
	if err != nil || len(cs) != 1 {
		t.Fatalf("alice's consents: %v %v", cs, err)
	}
	// The consent form's token (another step) of the same person does not
	// work the page: alice asks for more than her consent covers, which
	// shows her a consent form, whose token then tries to withdraw.
	more := request(challengeOf(pkceVerifier))
	more.Set("scope", "mail:read mail:send offline_access")
	fb := e.browser()
	csrf, form := e.signIn(t, fb, e.start(t, fb, more), "alice")
	if csrf == "" {
		t.Fatalf("no consent form for alice: %d %s", form.status, form.body)
	}
	a := do(t, fb, "POST", e.srv.URL+"/consents", url.Values{"csrf": {csrf}, "revoke": {cs[0].ID}})
	if a.status != http.StatusBadRequest {
		t.Fatalf("the consents page with a consent form's token: %d", a.status)
	}
	if now, _ := e.st.Consents(ctx, "corp", "alice", appID); len(now) != 1 || !now[0].Active(e.now) {
		t.Fatal("a consent was withdrawn with another step's token")
	}
	// The page's own token: withdrawn, and its refresh tokens with it.
	b := e.browser()
	start := do(t, b, "GET", e.srv.URL+"/consents", nil)
	if start.location == nil {
		t.Fatalf("GET /consents: %d", start.status)
	}
	pageCSRF, page := e.signIn(t, b, start.location.Query().Get("state"), "alice")
	if pageCSRF == "" {
		t.Fatalf("no consents page: %d %s", page.status, page.body)
	}
	a = e.follow(t, b, do(t, b, "POST", e.srv.URL+"/consents", url.Values{"csrf": {pageCSRF}, "revoke": {cs[0].ID}}))
	if a.status != 200 || a.from == nil || a.from.Path != "/consents" || strings.Contains(a.body, cs[0].ID) {
		t.Fatalf("withdrawal: %d %v %s", a.status, a.from, a.body)
	}
	// The list after it is at its own address: a reload shows it again
	// and sends nothing.
	if again := do(t, b, "GET", a.from.String(), nil); again.status != 200 {
		t.Fatalf("reloading the list: %d", again.status)
	}
	if _, err := e.st.LookupRefresh(ctx, authorize.Hash(refresh)); !errors.Is(err, authorize.ErrNotFound) {
		t.Fatalf("the withdrawn consent's refresh token: %v, want revoked", err)
	}
}

// TestDevLoginPage: the development login's form may lead to the client's
// redirect URI (the callback redirects there when a consent already covers
// the request, or on a refusal), so its CSP names that origin; the page is
// only for a live flow of this browser, and looking at it leaves the state
// for the form.
func TestDevLoginPage(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser()
	state := e.start(t, b, request(challengeOf(pkceVerifier)))
	get := func(c *http.Client, state string) (int, http.Header, string) {
		resp, err := c.Get(e.srv.URL + "/login/dev?state=" + url.QueryEscape(state))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(body)
	}
	for range 2 {
		status, h, body := get(b, state)
		if csp := h.Get("Content-Security-Policy"); status != 200 || !strings.Contains(csp, "form-action 'self' https://app.example.com;") || !strings.Contains(body, `name="user"`) {
			t.Fatalf("the page of a live flow: %d %s\n%s", status, csp, body)
		}
	}
	for _, tc := range []struct {
		name  string
		c     *http.Client
		state string
	}{
		{"no state", b, ""},
		{"an unknown state", b, authorize.Random(authorize.StateBytes)},
		{"another browser's state", e.browser(), state},
	} {
		if status, h, body := get(tc.c, tc.state); status != 400 || strings.Contains(body, `name="user"`) || strings.Contains(h.Get("Content-Security-Policy"), "app.example.com") {
			t.Errorf("%s: %d %s", tc.name, status, body)
		}
	}
	// The state is still the form's.
	if _, a := e.signIn(t, b, state, "alice"); a.status != 200 || !strings.Contains(a.body, `name="csrf"`) {
		t.Fatalf("sign-in after looking at the page: %d %s", a.status, a.body)
	}
	if status, _, _ := get(b, state); status != 400 {
		t.Fatalf("the page of a used state: %d", status)
	}
}

// TestUnvettedClients (issue 32): a client no administrator registered
// (DCR, a metadata document) is no open redirector: its request errors
// before sign-in get the error page, never its redirect URI; a vetted
// client's go back to it. Its consent screen warns and names where
// approving leads.
func TestUnvettedClients(t *testing.T) {
	const unvetted = "dcr-unvetted"
	e := newFlowEnv(t, fixedClients{
		appID:    {ID: appID, Name: "Mail App", RedirectURIs: []string{appCB}},
		unvetted: {ID: unvetted, Name: "Claude Desktop", RedirectURIs: []string{appCB}, Unvetted: true},
	})
	bad := func(client string) answer {
		q := request(challengeOf(pkceVerifier))
		q.Set("client_id", client)
		q.Set("code_challenge_method", "plain")
		return do(t, e.browser(), "GET", e.srv.URL+"/authorize?"+q.Encode(), nil)
	}
	if a := bad(appID); a.status != http.StatusSeeOther || a.location == nil || a.location.Query().Get("error") != "invalid_request" {
		t.Fatalf("a vetted client's bad request: %d %v", a.status, a.location)
	}
	if a := bad(unvetted); a.status != 400 || a.location != nil || !strings.Contains(a.body, "The application&#39;s request is not valid.") {
		t.Fatalf("an unvetted client's bad request: %d %v %s", a.status, a.location, a.body)
	}
	q := request(challengeOf(pkceVerifier))
	q.Set("client_id", unvetted)
	b := e.browser()
	_, page := e.signIn(t, b, e.start(t, b, q), "alice")
	if !strings.Contains(page.body, "No administrator has vetted this application: its name is its own claim. Approving sends you to app.example.com.") {
		t.Fatalf("the consent screen of an unvetted client:\n%s", page.body)
	}
	q.Set("client_id", appID)
	b = e.browser()
	if _, page := e.signIn(t, b, e.start(t, b, q), "alice"); strings.Contains(page.body, "No administrator has vetted") {
		t.Fatal("a vetted client warned as unvetted")
	}
}
