package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mcpsts/mcpsts/exchange/authorize"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/internal/devpki"
)

// people is a broker whose people sign in at a loopback corporate OIDC
// provider, with a registered desktop client, a trust map for people and
// one for a workload that acts for them.
type people struct {
	*Server
	idp, ci    *federationtest.Issuer
	client     *http.Client // trusts the broker
	caPEM      []byte
	leafPEM    []byte // the broker's certificate
	cert       tls.Certificate
	cb         *callbacks
	redirect   string // the desktop client's redirect URI (a loopback port)
	auditFile  string
	screenshot string // where the browser tests put their screenshots
}

const (
	filesServer = "https://files.example.com/mcp"
	desktopID   = "desktop"
	desktopName = "Desktop Assistant"
)

// callbacks is the desktop client's loopback redirect receiver.
type callbacks struct {
	mu  sync.Mutex
	got []url.Values
}

func (c *callbacks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/cb" {
		http.NotFound(w, r) // the browser's favicon.ico
		return
	}
	c.mu.Lock()
	c.got = append(c.got, r.URL.Query())
	c.mu.Unlock()
	fmt.Fprintln(w, "<!doctype html><title>client</title><p id=done>back at the client</p>")
}

func (c *callbacks) last(t *testing.T) url.Values {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.got) == 0 {
		t.Fatal("the browser never came back to the client")
	}
	return c.got[len(c.got)-1]
}

func startPeople(t *testing.T, files, extra string, opts Options) *people {
	t.Helper()
	p := &people{idp: federationtest.NewIssuer(t), ci: federationtest.NewIssuer(t), cb: &callbacks{}}
	p.idp.EnableLogin(federationtest.Login{ClientID: "mcpsts", ClientSecret: "corp-secret"})
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	os.Mkdir(filepath.Join(dir, "pki"), 0o700)
	pki, err := devpki.Ensure(filepath.Join(dir, "pki"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p.caPEM, _ = os.ReadFile(pki.CAPath)
	p.cert = pki.Certificate
	p.leafPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pki.Certificate.Leaf.Raw})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	broker := "https://" + ln.Addr().String()
	rcv := httptest.NewServer(p.cb)
	t.Cleanup(rcv.Close)
	p.redirect = rcv.URL + "/cb"
	maps := filepath.Join(dir, "maps")
	os.Mkdir(maps, 0o700)
	os.WriteFile(filepath.Join(maps, "people.yaml"), []byte(`id: people
match: {provider: corp, subject_pattern: ".+"}
grant:
  client_id_expr: request.client_id
  audiences: ["`+files+`"]
  scopes: [files:read, files:write]
  default_scopes: [files:read]
  max_ttl: 10m
---
id: agent
match: {provider: ci, subject: agent}
grant: {client_id: desktop, audiences: ["`+files+`"], scopes: [files:read]}
`), 0o600)
	p.auditFile = filepath.Join(dir, "audit.log")
	yaml := fmt.Sprintf(`issuer: %s
listen: %s
data_dir: %s
tls: {cert_file: %s, key_file: %s}
trust_maps: {paths: [%s]}
audit: {file: %s}
keys: {kek_file: %s}
providers:
  - name: corp
    kind: user
    issuer: %s
    discovery: true
    ca_file: %s
    audiences: [%s]
    login: {client_id: mcpsts, client_secret_file: %s}
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}
authorization:
  scope_descriptions: {"files:read": "Read your files", "files:write": "Change your files"}
%s`, broker, ln.Addr(), filepath.Join(dir, "data"), filepath.Join(dir, "pki", "server.pem"), filepath.Join(dir, "pki", "server-key.pem"),
		maps, p.auditFile, write("kek", []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n")), p.idp.URL, write("idp.pem", p.idp.CAPEM()), broker, write("secret", []byte("corp-secret\n")),
		p.ci.URL, write("ci.pem", p.ci.CAPEM()), extra)
	cfg, err := config.Load(write("mcpsts.yaml", []byte(yaml)), func(string) string { return "" }, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	opts.Listener, opts.Getenv = ln, func(string) string { return "" }
	s, err := New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	p.Server = s
	doc, _ := json.Marshal(map[string]any{"client_id": desktopID, "name": desktopName, "grant_types": []string{"authorization_code", "urn:ietf:params:oauth:grant-type:token-exchange"},
		"redirect_uris": []string{"http://127.0.0.1/cb"}})
	if _, err := s.st.Clients().PutRecord(context.Background(), desktopID, doc, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.clients.reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(p.caPEM)
	p.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	p.screenshot = os.Getenv("MCPSTS_SCREENSHOTS")
	if p.screenshot == "" {
		p.screenshot = t.TempDir()
	}
	return p
}

// pkce is a verifier and its S256 challenge.
func pkce() (verifier, challenge string) {
	verifier = authorize.Random(32)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorizeURL is the desktop client's authorization request.
func (p *people) authorizeURL(state, challenge, scope string) string {
	return p.Issuer + "/authorize?" + url.Values{"response_type": {"code"}, "client_id": {desktopID}, "redirect_uri": {p.redirect},
		"state": {state}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}, "resource": {filesServer}, "scope": {scope}}.Encode()
}

// token posts a form to the token endpoint.
func (p *people) token(t *testing.T, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := p.client.PostForm(p.Issuer+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// spki is the base64 SHA-256 of a certificate's public key, for Chromium's
// --ignore-certificate-errors-spki-list: the browser trusts exactly these
// test certificates, nothing else.
func spki(t *testing.T, certPEM []byte) string {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// newBrowser starts headless Chromium trusting the given certificates.
func newBrowser(t *testing.T, certs ...[]byte) context.Context {
	t.Helper()
	path := "/usr/bin/chromium"
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Chromium is required in CI (.ci/run installs it): %v", err)
		}
		t.Skip("no Chromium here: apt-get install chromium chromium-driver")
	}
	var pins []string
	for _, c := range certs {
		pins = append(pins, spki(t, c))
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(pins, ",")),
		chromedp.Flag("disable-quic", true), chromedp.Flag("lang", "en-US"), chromedp.WindowSize(900, 1000))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// shot saves a screenshot of the page as name.png.
func (p *people) shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.screenshot, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// textAfter waits for sel and returns the text of the page's main.
func (p *people) textAfter(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(wctx, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`body`)))
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		p.shot(t, ctx, "failed")
		t.Fatalf("waiting for %s: %v\nat %s:\n%s", sel, err, loc, body)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// signIn signs alice in at the corporate provider's page.
func signIn(ctx context.Context, user string) error {
	return chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), user),
		chromedp.Click(chromedp.CSS(`#signin`)),
	)
}

// TestBrowserFlow: the whole flow in a real browser against a loopback
// corporate OIDC provider with its own login page: sign in, the consent
// screen names the client, server, scopes and redirect host; approve; the
// browser lands on the redirect URI with code, state and iss; the code is
// exchanged; a second request skips the screen; deny; revoke on /consents,
// after which the refresh token and a user-delegated exchange are refused.
func TestBrowserFlow(t *testing.T) {
	p := startPeople(t, filesServer, "", Options{})
	ctx := newBrowser(t, p.leafPEM, p.idp.CAPEM())

	// A redirect URI the client did not register: an error page, in the
	// browser too, and the browser stays here.
	_, challenge0 := pkce()
	evil := strings.Replace(p.authorizeURL("s0", challenge0, "files:read"), url.QueryEscape(p.redirect), url.QueryEscape("https://evil.example/cb"), 1)
	if err := chromedp.Do(ctx, chromedp.Navigate(evil)); err != nil {
		t.Fatal(err)
	}
	if text := p.textAfter(t, ctx, `h1`); !strings.Contains(text, "This request cannot continue") || !strings.Contains(text, "is not one it registered") {
		t.Fatalf("error page:\n%s", text)
	}
	p.shot(t, ctx, "error")

	// Approve.
	verifier, challenge := pkce()
	state := authorize.Random(16)
	if err := chromedp.Do(ctx, chromedp.Navigate(p.authorizeURL(state, challenge, "files:read offline_access"))); err != nil {
		t.Fatal(err)
	}
	if err := signIn(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	text := p.textAfter(t, ctx, `button[value=approve]`)
	p.shot(t, ctx, "consent")
	rcv, _ := url.Parse(p.redirect)
	for _, want := range []string{desktopName + " wants access", "Signed in as alice", desktopID, rcv.Host, filesServer,
		"Read your files (files:read)", "Keep this access while you are away", "runs on your computer", "Each access token it gets lives 10 minutes."} {
		if !strings.Contains(text, want) {
			t.Errorf("the consent screen does not say %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "files:write") {
		t.Errorf("the consent screen shows a scope not asked for:\n%s", text)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[value=approve]`)), chromedp.WaitVisible(chromedp.CSS(`#done`))); err != nil {
		t.Fatal(err)
	}
	back := p.cb.last(t)
	if back.Get("state") != state || back.Get("iss") != p.Issuer || back.Get("code") == "" || back.Get("error") != "" {
		t.Fatalf("back at the client with %v", back)
	}
	status, tok := p.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {back.Get("code")}, "client_id": {desktopID},
		"redirect_uri": {p.redirect}, "code_verifier": {verifier}})
	if status != 200 || tok["refresh_token"] == nil || tok["scope"] != "files:read" {
		t.Fatalf("code exchange: %d %v", status, tok)
	}
	claims := p.inspect(t, tok["access_token"].(string))
	if claims["sub"] != "user:corp/alice" || claims["client_id"] != desktopID || claims["aud"] != filesServer || claims["scope"] != "files:read" {
		t.Fatalf("access token claims %v", claims)
	}
	refresh := tok["refresh_token"].(string)

	// The same request again: the consent covers it, no screen.
	_, challenge2 := pkce()
	state2 := authorize.Random(16)
	if err := chromedp.Do(ctx, chromedp.Navigate(p.authorizeURL(state2, challenge2, "files:read"))); err != nil {
		t.Fatal(err)
	}
	if err := signIn(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#done`))); err != nil {
		t.Fatal(err)
	}
	if back := p.cb.last(t); back.Get("state") != state2 || back.Get("code") == "" {
		t.Fatalf("a consented request came back with %v", back)
	}

	// Deny: more scopes than consented ask again.
	_, challenge3 := pkce()
	state3 := authorize.Random(16)
	if err := chromedp.Do(ctx, chromedp.Navigate(p.authorizeURL(state3, challenge3, "files:read files:write"))); err != nil {
		t.Fatal(err)
	}
	if err := signIn(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`button[value=deny]`)), chromedp.Click(chromedp.CSS(`button[value=deny]`)), chromedp.WaitVisible(chromedp.CSS(`#done`))); err != nil {
		t.Fatal(err)
	}
	if back := p.cb.last(t); back.Get("error") != "access_denied" || back.Get("state") != state3 || back.Get("iss") != p.Issuer || back.Get("code") != "" {
		t.Fatalf("deny came back with %v", back)
	}

	// Before revocation: the workload acting for alice gets a token.
	if status, body := p.delegated(t); status != 200 {
		t.Fatalf("user-delegated exchange before revocation: %d %v", status, body)
	}

	// Revoke on /consents.
	if err := chromedp.Do(ctx, chromedp.Navigate(p.Issuer+"/consents")); err != nil {
		t.Fatal(err)
	}
	if err := signIn(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	text = p.textAfter(t, ctx, `table`)
	p.shot(t, ctx, "consents")
	if !strings.Contains(text, desktopID) || !strings.Contains(text, filesServer) {
		t.Fatalf("the consents page:\n%s", text)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`form button`))); err != nil {
		t.Fatal(err)
	}
	text = p.textAfter(t, ctx, `.warn`)
	p.shot(t, ctx, "consents-revoked")
	if !strings.Contains(text, "Revoked the consent to "+desktopID) || !strings.Contains(text, "You have no active consent.") {
		t.Fatalf("after revoking:\n%s", text)
	}
	status, body := p.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {desktopID}})
	if status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("refresh after revocation: %d %v", status, body)
	}
	if status, body := p.delegated(t); status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("user-delegated exchange after revocation: %d %v", status, body)
	}
	want := map[string]int{"authorize.deny": 1, "login.allow": 4, "consent.grant": 1, "authorize.code": 2, "consent.deny": 1, "consent.revoke": 1, "token.allow": 2, "token.deny": 2}
	deadline := time.Now().Add(10 * time.Second)
	for events := p.auditEvents(t); !maps.Equal(events, want); events = p.auditEvents(t) {
		if time.Now().After(deadline) {
			t.Fatalf("audit events %v, want %v", events, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// inspect decodes a token's claims (the signature is the resource
// package's to check; here the broker's own client reads what it got).
func (p *people) inspect(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	json.Unmarshal(b, &c)
	return c
}

// delegated is the workload "agent" exchanging alice's token for a token
// for the files server (RFC 8693 with actor_token).
func (p *people) delegated(t *testing.T) (int, map[string]any) {
	t.Helper()
	now := time.Now().Unix()
	user := p.idp.Sign(map[string]any{"iss": p.idp.URL, "sub": "alice", "aud": p.Issuer, "iat": now, "exp": now + 300}, nil)
	actor := p.ci.Sign(map[string]any{"iss": p.ci.URL, "sub": "agent", "aud": p.Issuer, "iat": now, "exp": now + 300}, nil)
	return p.token(t, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token": {user}, "subject_token_type": {"urn:ietf:params:oauth:token-type:id_token"},
		"actor_token": {actor}, "actor_token_type": {"urn:ietf:params:oauth:token-type:jwt"},
		"resource": {filesServer}, "scope": {"files:read"}})
}

// auditEvents counts the audit log's events by name.
func (p *people) auditEvents(t *testing.T) map[string]int {
	t.Helper()
	data, err := os.ReadFile(p.auditFile)
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var rec struct {
			Event string `json:"event"`
		}
		json.Unmarshal([]byte(line), &rec)
		n[rec.Event]++
	}
	return n
}
