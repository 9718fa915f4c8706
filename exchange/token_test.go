package exchange_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/issuer/keystoretest"
	"github.com/mcpsts/mcpsts/trustmaps"
)

const broker = "https://sts.example.com"

const maps = `
id: ci-payments
match:
  provider: ci
  subject: "repo:example-org/payments:ref:refs/heads/main"
grant:
  client_id: payments-ci
  audiences: ["https://payments.example.com/mcp"]
  scopes: ["payments:read", "payments:write"]
  default_scopes: ["payments:read"]
  claims: {team: payments}
---
id: ci-ledger
match:
  provider: ci
  subject: "repo:example-org/payments:ref:refs/heads/main"
grant:
  client_id: payments-ci
  audiences: ["https://ledger.example.com/mcp"]
  scopes: ["payments:read", "ledger:read"]
  may_act:
    - {provider: ci, subject: "repo:example-org/payments-server:ref:refs/heads/main"}
---
id: ci-bound
match:
  provider: ci
  subject: "repo:example-org/bound:ref:refs/heads/main"
grant:
  client_id: bound-ci
  audiences: ["https://payments.example.com/mcp"]
  require_binding: mtls
`

type memCache struct {
	mu   sync.Mutex
	held map[string]time.Time
}

func (m *memCache) Claim(_ context.Context, key string, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u, ok := m.held[key]; ok && u.After(time.Now()) {
		return attest.ErrReplayed
	}
	m.held[key] = until
	return nil
}

type env struct {
	// nowMu guards now against the goroutines that read the clock in the
	// background (a provider refreshing its keys): tests move it with
	// setNow.
	nowMu sync.Mutex
	// revoked is the revocation list of revocations(), if made.
	revoked *store.Store
	idp     *federationtest.Issuer
	srv     *httptest.Server
	iss     *issuer.Issuer
	logs    *bytes.Buffer
	now     time.Time
	cfg     exchange.Config
	rec     *tracetest.SpanRecorder
	prov    *federation.Provider
}

// check is the mcpsts.deny.check of the last finished span: the audit
// trail's name of the check that refused a credential ("" if none).
func (e *env) check() string {
	ended := e.rec.Ended()
	if len(ended) == 0 {
		return ""
	}
	for _, kv := range ended[len(ended)-1].Attributes() {
		if kv.Key == "mcpsts.deny.check" {
			return kv.Value.AsString()
		}
	}
	return ""
}

// clock is the endpoint's clock: now, read under its lock.
func (e *env) clock() time.Time {
	e.nowMu.Lock()
	defer e.nowMu.Unlock()
	return e.now
}

// setNow moves the clock.
func (e *env) setNow(t time.Time) {
	e.nowMu.Lock()
	defer e.nowMu.Unlock()
	e.now = t
}

// revocations opens a store for the endpoint's revocation list (once).
func (e *env) revocations(t testing.TB) exchange.Revocations {
	t.Helper()
	if e.revoked == nil {
		st, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "revocations.db"), store.WithClock(e.clock))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		e.revoked = st
	}
	return e.revoked
}

// restart serves the endpoint again with cfg changed by mut.
func (e *env) restart(t testing.TB, mut func(*exchange.Config)) {
	e.srv.Close()
	cfg := e.cfg
	mut(&cfg)
	e.srv = httptest.NewUnstartedServer(exchange.NewHandler(cfg))
	e.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{idp: federationtest.NewIssuer(t), logs: &bytes.Buffer{}, now: time.Now().Truncate(time.Second), rec: tracetest.NewSpanRecorder()}
	clock := e.clock
	prov, err := federation.NewProvider(federation.ProviderConfig{Name: "ci", Issuer: e.idp.URL, Discovery: true, Fetcher: e.idp.Fetcher(), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	e.prov = prov
	v, err := oidc.New(clock, oidc.ProviderConfig{Keys: prov, Audiences: []string{broker, broker + "/token"}, SingleUse: true})
	if err != nil {
		t.Fatal(err)
	}
	att := attest.SingleUse(v, &memCache{held: map[string]time.Time{}})
	eng, err := trustmaps.Compile(trustmaps.Document{Name: "maps.yaml", Data: []byte(maps)})
	if err != nil {
		t.Fatal(err)
	}
	text, _ := issuer.GenerateKEK()
	kek, _ := issuer.ParseKEK(text)
	e.iss, err = issuer.New(issuer.Config{Issuer: broker, Store: keystoretest.NewMemory(), Local: &issuer.LocalKeys{KEK: kek, Algorithm: issuer.ES256}, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.iss.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.cfg = exchange.Config{
		Self:      []string{broker},
		Attestors: map[string]attest.Attestor{exchange.TokenTypeJWT: att, exchange.TokenTypeIDToken: att, exchange.GrantJWTBearer: att},
		Decider:   eng, Minter: e.iss, Tokens: e.iss, Clock: clock,
		Tracer: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e.rec)).Tracer("test"),
		Log:    slog.New(slog.NewTextHandler(e.logs, nil)),
	}
	e.srv = httptest.NewUnstartedServer(exchange.NewHandler(e.cfg))
	e.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) subjectToken(sub string, mut func(map[string]any)) string {
	n := e.now.Unix()
	c := map[string]any{"iss": e.idp.URL, "sub": sub, "aud": broker, "iat": n, "exp": n + 300, "jti": base64.RawURLEncoding.EncodeToString([]byte(sub + time.Now().String()))}
	if mut != nil {
		mut(c)
	}
	return e.idp.Sign(c, nil)
}

type result struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (e *env) post(t testing.TB, form url.Values, mut func(*http.Request), certs ...tls.Certificate) result {
	t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if mut != nil {
		mut(req)
	}
	tr := e.srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = certs
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	json.Unmarshal(raw, &body)
	return result{resp.StatusCode, resp.Header, body, string(raw)}
}

func exchangeForm(subject string) url.Values {
	return url.Values{
		"grant_type":         {exchange.GrantTokenExchange},
		"subject_token":      {subject},
		"subject_token_type": {exchange.TokenTypeJWT},
		"resource":           {"https://payments.example.com/mcp"},
	}
}

const mainSub = "repo:example-org/payments:ref:refs/heads/main"

func TestTokenExchangeSuccess(t *testing.T) {
	e := newEnv(t)
	res := e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), nil)
	if res.status != 200 {
		t.Fatalf("status %d %s", res.status, res.raw)
	}
	if res.header.Get("Cache-Control") != "no-store" || res.header.Get("Pragma") != "no-cache" || res.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", res.header)
	}
	b := res.body
	if b["issued_token_type"] != exchange.TokenTypeAccessToken || b["token_type"] != "Bearer" || b["expires_in"] != 900.0 || b["scope"] != "payments:read" {
		t.Fatalf("response %v", b)
	}
	claims := verify(t, e, b["access_token"].(string))
	if claims["aud"] != "https://payments.example.com/mcp" || claims["sub"] != "workload:ci/"+mainSub ||
		claims["client_id"] != "payments-ci" || claims["scope"] != "payments:read" || claims["team"] != "payments" {
		t.Fatalf("claims %v", claims)
	}

	// Requested scopes equal to the grant: no scope in the answer; the
	// origin of the resource in another spelling names the same server.
	f := exchangeForm(e.subjectToken(mainSub, nil))
	f.Set("scope", "payments:write payments:read")
	f["resource"] = []string{"HTTPS://payments.example.com:443/mcp", "https://payments.example.com/mcp"}
	f.Set("requested_token_type", exchange.TokenTypeJWT)
	res = e.post(t, f, nil)
	if res.status != 200 || res.body["scope"] != nil || res.body["issued_token_type"] != exchange.TokenTypeJWT {
		t.Fatalf("status %d %v", res.status, res.body)
	}

	// No target: the map's only audience. Google's STS client sends
	// audience (and an empty scope) instead of resource.
	f = exchangeForm(e.subjectToken(mainSub, nil))
	f.Del("resource")
	f.Set("audience", "https://payments.example.com/mcp")
	f.Set("scope", "")
	if res = e.post(t, f, nil); res.status != 200 {
		t.Fatalf("audience parameter: %d %v", res.status, res.body)
	}
	f.Del("audience")
	f.Set("subject_token", e.subjectToken(mainSub, nil))
	// (the first map in order, ci-ledger, grants a single audience)
	if res = e.post(t, f, nil); res.status != 200 || verify(t, e, res.body["access_token"].(string))["aud"] != "https://ledger.example.com/mcp" {
		t.Fatalf("no target: %d %v", res.status, res.body)
	}
}

func verify(t *testing.T, e *env, raw string) map[string]any {
	t.Helper()
	rec := httptest.NewRecorder()
	e.iss.JWKSHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	var set jose.JSONWebKeySet
	json.Unmarshal(rec.Body.Bytes(), &set)
	tok, err := josejwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := tok.Claims(set.Key(tok.Headers[0].KeyID)[0].Key, &claims); err != nil {
		t.Fatalf("minted token does not verify: %v", err)
	}
	return claims
}

func TestJWTBearer(t *testing.T) {
	e := newEnv(t)
	assertion := e.subjectToken(mainSub, func(c map[string]any) { c["aud"] = broker + "/token" })
	res := e.post(t, url.Values{"grant_type": {exchange.GrantJWTBearer}, "assertion": {assertion}, "resource": {"https://payments.example.com/mcp"}}, nil)
	if res.status != 200 || res.body["token_type"] != "Bearer" {
		t.Fatalf("jwt-bearer: %d %v", res.status, res.body)
	}
}

func TestBinding(t *testing.T) {
	e := newEnv(t)
	sub := "repo:example-org/bound:ref:refs/heads/main"
	res := e.post(t, exchangeForm(e.subjectToken(sub, nil)), nil)
	if res.status != 400 || res.body["error"] != "invalid_request" || !strings.Contains(res.body["error_description"].(string), "certificate-bound") {
		t.Fatalf("bound map without a certificate: %d %v", res.status, res.body)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	res = e.post(t, exchangeForm(e.subjectToken(sub, nil)), nil, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key})
	if res.status != 200 {
		t.Fatalf("with a certificate: %d %v", res.status, res.body)
	}
	sum := sha256.Sum256(der)
	cnf := verify(t, e, res.body["access_token"].(string))["cnf"].(map[string]any)
	if cnf["x5t#S256"] != base64.RawURLEncoding.EncodeToString(sum[:]) {
		t.Fatalf("cnf %v, want the client certificate's thumbprint", cnf)
	}
}

// TestErrors asserts status, error code and headers of every refusal.
func TestErrors(t *testing.T) {
	e := newEnv(t)
	good := func() url.Values { return exchangeForm(e.subjectToken(mainSub, nil)) }
	with := func(f url.Values, k, v string) url.Values { f.Set(k, v); return f }
	without := func(f url.Values, k string) url.Values { f.Del(k); return f }
	replayed := e.subjectToken(mainSub, nil)
	e.post(t, exchangeForm(replayed), nil)
	tests := []struct {
		name   string
		form   url.Values
		mut    func(*http.Request)
		status int
		code   string
		desc   string
	}{
		{"GET", good(), func(r *http.Request) { r.Method = "GET" }, 405, "invalid_request", "the token endpoint takes POST"},
		{"JSON body", good(), func(r *http.Request) { r.Header.Set("Content-Type", "application/json") }, 400, "invalid_request", "application/x-www-form-urlencoded"},
		{"parameters in the query", good(), func(r *http.Request) { r.URL.RawQuery = "scope=x" }, 400, "invalid_request", "not the query string"},
		{"body over 64 KiB", with(good(), "pad", strings.Repeat("x", 70<<10)), nil, 413, "invalid_request", "larger than 65536 bytes"},
		{"repeated parameter", func() url.Values { f := good(); f["scope"] = []string{"a", "b"}; return f }(), nil, 400, "invalid_request", "parameter scope is repeated"},
		{"no grant_type", without(good(), "grant_type"), nil, 400, "invalid_request", "grant_type is required"},
		{"empty grant_type is absent", with(good(), "grant_type", ""), nil, 400, "invalid_request", "grant_type is required"},
		{"password grant", with(good(), "grant_type", "password"), nil, 400, "unsupported_grant_type", "supported grant types"},
		{"client secret by Basic", good(), func(r *http.Request) { r.SetBasicAuth("client", "secret") }, 401, "invalid_client", "mcpsts issues no client secrets"},
		{"two client auth methods", with(with(good(), "client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), "client_assertion", "x"), func(r *http.Request) { r.SetBasicAuth("c", "s") }, 400, "invalid_request", "one client authentication method"},
		{"no subject_token", with(good(), "subject_token", ""), nil, 400, "invalid_request", "subject_token is required"},
		{"no subject_token_type", without(good(), "subject_token_type"), nil, 400, "invalid_request", "subject_token_type is required"},
		{"unknown subject_token_type", with(good(), "subject_token_type", "urn:example:token"), nil, 400, "invalid_request", "unsupported subject_token_type"},
		{"actor_token without type", with(good(), "actor_token", "x"), nil, 400, "invalid_request", "go together"},
		{"requested SAML", with(good(), "requested_token_type", "urn:ietf:params:oauth:token-type:saml2"), nil, 400, "invalid_request", "requested_token_type must be"},
		{"expired subject token", exchangeForm(e.subjectToken(mainSub, func(c map[string]any) { c["exp"] = e.now.Unix() - 600 })), nil, 400, "invalid_request", "the credential was refused [check token_expired]"},
		{"subject token for another service", exchangeForm(e.subjectToken(mainSub, func(c map[string]any) { c["aud"] = "https://other.example" })), nil, 400, "invalid_request", "the credential was refused [check wrong_audience]"},
		{"replayed subject token", exchangeForm(replayed), nil, 400, "invalid_request", "already used"},
		{"scope not granted", with(good(), "scope", "payments:admin"), nil, 400, "invalid_scope", "not granted"},
		{"resource not granted", with(good(), "resource", "https://hr.example.com/mcp"), nil, 400, "invalid_target", "not granted"},
		{"two resources", func() url.Values {
			f := good()
			f["resource"] = []string{"https://payments.example.com/mcp", "https://hr.example.com/mcp"}
			return f
		}(), nil, 400, "invalid_target", "exactly one MCP server"},
		{"resource with a fragment", with(good(), "resource", "https://payments.example.com/mcp#x"), nil, 400, "invalid_target", "has a fragment"},
		{"http resource", with(good(), "resource", "http://payments.example.com/mcp"), nil, 400, "invalid_target", "not an absolute https URI"},
		{"no map for the subject", exchangeForm(e.subjectToken("repo:example-org/other:ref:refs/heads/main", nil)), nil, 400, "invalid_request", "no trust map grants"},
		{"jwt-bearer without assertion", url.Values{"grant_type": {exchange.GrantJWTBearer}}, nil, 400, "invalid_request", "assertion is required"},
		{"jwt-bearer with a bad assertion", url.Values{"grant_type": {exchange.GrantJWTBearer}, "assertion": {"x.y.z"}}, nil, 400, "invalid_grant", "the credential was refused [check malformed_token]"},
		{"jwt-bearer denied by policy", url.Values{"grant_type": {exchange.GrantJWTBearer}, "assertion": {e.subjectToken("repo:x/y:ref:z", nil)}, "resource": {"https://payments.example.com/mcp"}}, nil, 400, "invalid_grant", "no trust map grants"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.post(t, tt.form, tt.mut)
			if res.status != tt.status || res.body["error"] != tt.code {
				t.Fatalf("got %d %v, want %d %s", res.status, res.raw, tt.status, tt.code)
			}
			// A refused credential's check is in the audit trail only.
			if d, _ := res.body["error_description"].(string); !strings.Contains(d+" [check "+e.check()+"]", tt.desc) {
				t.Errorf("error_description %q [check %s] lacks %q", d, e.check(), tt.desc)
			}
			if len(res.body["trace_id"].(string)) != 32 {
				t.Errorf("no trace id: %v", res.body)
			}
			if res.header.Get("Cache-Control") != "no-store" || res.header.Get("Pragma") != "no-cache" {
				t.Errorf("error without no-store: %v", res.header)
			}
			wantChallenge := ""
			if tt.status == 401 && tt.code == "invalid_client" {
				wantChallenge = `Basic realm="mcpsts"`
			}
			if got := res.header.Get("WWW-Authenticate"); got != wantChallenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, wantChallenge)
			}
		})
	}
}

// TestNoTokenInLogsOrErrors sends subject tokens carrying a canary and
// checks that it shows up in no response and no log line.
func TestNoTokenInLogsOrErrors(t *testing.T) {
	e := newEnv(t)
	const canary = "CANARY-7f3a9c"
	for _, tok := range []string{
		e.subjectToken(mainSub, func(c map[string]any) { c["note"] = canary }),
		e.subjectToken(mainSub, func(c map[string]any) { c["note"] = canary; c["exp"] = 1 }),
		e.subjectToken("canary-subject-"+canary, nil),
		"not-a-jwt-" + canary,
	} {
		res := e.post(t, exchangeForm(tok), nil)
		if strings.Contains(res.raw, canary) || strings.Contains(res.raw, tok) {
			t.Fatalf("response holds the subject token: %s", res.raw)
		}
	}
	if strings.Contains(e.logs.String(), canary) {
		t.Fatalf("logs hold the subject token:\n%s", e.logs)
	}
	if !strings.Contains(e.logs.String(), "token request refused") {
		t.Fatal("refusals are not logged")
	}
}

// TestBasicRefusalLoggedAtDebug: a client that tries HTTP Basic first (the
// MCP Go SDK, on every code redemption) is told how to authenticate; that
// routine refusal is a debug line, not an info line (it is audited like
// every refusal), while other refusals stay at info.
func TestBasicRefusalLoggedAtDebug(t *testing.T) {
	e := newEnv(t)
	f := url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {"desktop"}}
	if res := e.post(t, f, func(r *http.Request) { r.SetBasicAuth("desktop", "") }); res.status != 401 || res.body["error"] != "invalid_client" {
		t.Fatalf("Basic: %d %v", res.status, res.body)
	}
	if strings.Contains(e.logs.String(), "token request refused") {
		t.Fatalf("a Basic attempt logged at info:\n%s", e.logs)
	}
	if res := e.post(t, url.Values{"grant_type": {"password"}}, nil); res.status != 400 {
		t.Fatalf("another refusal: %d %v", res.status, res.body)
	}
	if !strings.Contains(e.logs.String(), `level=INFO msg="token request refused" error=unsupported_grant_type`) {
		t.Fatalf("another refusal not logged at info:\n%s", e.logs)
	}
}
