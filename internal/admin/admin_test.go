package admin_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/internal/admin"
	"github.com/mcpsts/mcpsts/internal/mapfiles"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/trustmaps"
)

const iss = "https://sts.example.com"

type env struct {
	srv    *httptest.Server
	iss    *issuer.Issuer
	policy *trustmaps.Policy
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	st     *store.Store
	accept *exchange.Acceptor // this admin API's
	other  *exchange.Acceptor // another replica's on the same store
}

func newEnv(t *testing.T) *env { t.Helper(); return newEnvWith(t, nil) }

// newEnvWith is newEnv with the admin configuration changed by mut.
func newEnvWith(t *testing.T, mut func(*admin.Config)) *env {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	text, _ := issuer.GenerateKEK()
	kek, _ := issuer.ParseKEK(text)
	is, err := issuer.New(issuer.Config{Issuer: iss, Store: st, Local: &issuer.LocalKeys{KEK: kek, Algorithm: issuer.ES256}})
	if err != nil {
		t.Fatal(err)
	}
	if err := is.Start(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "file.yaml"), []byte("id: from-file\nmatch: {provider: p, subject: f}\ngrant: {client_id: f, audiences: [\"https://a.example/mcp\"]}\n"), 0o600)
	src := trustmaps.Sources{mapfiles.Files{dir}, trustmaps.RepositorySource{Repo: st}}
	policy, err := trustmaps.NewPolicy(ctx, src, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{iss: is, policy: policy, st: st}
	e.caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "admin CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &e.caKey.PublicKey, e.caKey)
	e.ca, _ = x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(e.ca)
	// The acceptor of the replica this admin API runs on; e.other is
	// another replica's, sharing the store.
	e.accept, err = exchange.NewAcceptor(exchange.AcceptorConfig{Tokens: is, Revocations: st, SingleUse: st})
	if err != nil {
		t.Fatal(err)
	}
	e.other, _ = exchange.NewAcceptor(exchange.AcceptorConfig{Tokens: is, Revocations: st, SingleUse: st})
	cfg := admin.Config{
		Repo: st, Policy: policy, Source: src, Consents: st, Revocations: e.accept,
		Auth: admin.AnyOf{
			admin.TokenAuth{Acceptor: e.accept, Audience: iss + "/admin"},
			admin.CertAuth{Roots: roots, Names: []string{"spiffe://example.org/ops/terraform"}},
		},
		Log:   slog.New(slog.DiscardHandler),
		Clock: time.Now,
	}
	if mut != nil {
		mut(&cfg)
	}
	h := admin.Handler(cfg)
	e.srv = httptest.NewUnstartedServer(h)
	e.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) token(t *testing.T, audience string, scopes ...string) string {
	t.Helper()
	return e.boundToken(t, nil, audience, scopes...)
}

// boundToken is token with the confirmation cnf (nil: a bearer token).
func (e *env) boundToken(t *testing.T, cnf *issuer.Confirmation, audience string, scopes ...string) string {
	t.Helper()
	tok, err := e.iss.Mint(context.Background(), issuer.Grant{Subject: "github/repo:ops/infra", Audience: audience, ClientID: "terraform", Scopes: scopes, Confirmation: cnf})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Raw
}

// clientCert makes a client certificate for uri, signed by the admin CA
// (or by a CA of its own when foreign).
func (e *env) clientCert(t *testing.T, uri string, foreign bool) tls.Certificate {
	t.Helper()
	return e.cert(t, uri, foreign, x509.ExtKeyUsageClientAuth)
}

// cert is clientCert with the extended key usage eku.
func (e *env) cert(t *testing.T, uri string, foreign bool, eku x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(uri)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), URIs: []*url.URL{u}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{eku}, KeyUsage: x509.KeyUsageDigitalSignature}
	parent, parentKey := e.ca, e.caKey
	if foreign {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

type call struct {
	method, path, body string
	header             map[string]string
	cert               *tls.Certificate
}

func (e *env) do(t *testing.T, c call) (int, http.Header, map[string]any) {
	t.Helper()
	tr := e.srv.Client().Transport.(*http.Transport).Clone()
	if c.cert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{*c.cert}
	}
	req, _ := http.NewRequest(c.method, e.srv.URL+c.path, bytes.NewReader([]byte(c.body)))
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	json.Unmarshal(raw, &body)
	return resp.StatusCode, resp.Header, body
}

const storedMap = `{"id":"ops","match":{"provider":"github","subject":"repo:ops/infra:ref:refs/heads/main"},"grant":{"client_id":"deployer","audiences":["https://deploy.example.com/mcp"],"scopes":["deploy:write"],"max_ttl":"10m"}}`

func TestAuthorization(t *testing.T) {
	e := newEnv(t)
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	good := e.clientCert(t, "spiffe://example.org/ops/terraform", false)
	other := e.clientCert(t, "spiffe://example.org/ops/intern", false)
	foreign := e.clientCert(t, "spiffe://example.org/ops/terraform", true)
	serverOnly := e.cert(t, "spiffe://example.org/ops/terraform", false, x509.ExtKeyUsageServerAuth)
	// A token bound (cnf x5t#S256) to a certificate the admin API does
	// not accept by itself (another CA), so that only the token can
	// authorize a request that presents it.
	holder := e.clientCert(t, "spiffe://example.org/ops/ci", true)
	sum := sha256.Sum256(holder.Certificate[0])
	bound := e.boundToken(t, &issuer.Confirmation{X5TS256: base64.RawURLEncoding.EncodeToString(sum[:])}, iss+"/admin", admin.Scope)
	dpop := e.boundToken(t, &issuer.Confirmation{JKT: base64.RawURLEncoding.EncodeToString(sum[:])}, iss+"/admin", admin.Scope)
	tests := []struct {
		name string
		c    call
		want int
	}{
		{"no credentials", call{method: "GET", path: "/admin/v1/trust-maps"}, 401},
		{"garbage token", call{method: "GET", path: "/admin/v1/trust-maps", header: bearer("x.y.z")}, 401},
		{"token for another audience", call{method: "GET", path: "/admin/v1/trust-maps", header: bearer(e.token(t, "https://payments.example.com/mcp", admin.Scope))}, 401},
		{"token without the admin scope", call{method: "GET", path: "/admin/v1/trust-maps", header: bearer(e.token(t, iss+"/admin", "read"))}, 403},
		{"admin token", call{method: "GET", path: "/admin/v1/trust-maps", header: bearer(e.token(t, iss+"/admin", admin.Scope))}, 200},
		{"token in the query string is not read", call{method: "GET", path: "/admin/v1/trust-maps?access_token=" + e.token(t, iss+"/admin", admin.Scope)}, 401},
		{"admin certificate", call{method: "GET", path: "/admin/v1/trust-maps", cert: &good}, 200},
		{"certificate of a non-admin", call{method: "GET", path: "/admin/v1/trust-maps", cert: &other}, 403},
		{"certificate from another CA", call{method: "GET", path: "/admin/v1/trust-maps", cert: &foreign}, 401},
		{"admin certificate for servers only (no clientAuth usage)", call{method: "GET", path: "/admin/v1/trust-maps", cert: &serverOnly}, 401},
		// Finding 4 of the security review: cnf is enforced.
		{"certificate-bound admin token over its certificate", call{method: "GET", path: "/admin/v1/trust-maps", header: bearer(bound), cert: &holder}, 200},
		{"certificate-bound admin token without a certificate", call{method: "GET", path: "/admin/v1/trust-maps", header: bearer(bound)}, 401},
		{"certificate-bound admin token over another certificate", call{method: "GET", path: "/admin/v1/trust-maps", header: bearer(bound), cert: &foreign}, 401},
		{"DPoP-bound admin token as a bearer token", call{method: "GET", path: "/admin/v1/trust-maps", header: bearer(dpop), cert: &holder}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, body := e.do(t, tt.c)
			if status != tt.want {
				t.Fatalf("status %d %v, want %d", status, body, tt.want)
			}
			if status == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), `Bearer realm="mcpsts-admin"`) {
				t.Errorf("401 without a Bearer challenge: %q", h.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestTrustMapLifecycle(t *testing.T) {
	e := newEnv(t)
	auth := map[string]string{"Authorization": "Bearer " + e.token(t, iss+"/admin", admin.Scope)}
	with := func(extra map[string]string) map[string]string {
		h := map[string]string{}
		for k, v := range auth {
			h[k] = v
		}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	decide := func() error {
		_, err := e.policy.Engine().Decide(context.Background(), attest.Identity{Provider: "github", Subject: "repo:ops/infra:ref:refs/heads/main"},
			trustmaps.Request{Audience: "https://deploy.example.com/mcp", Scopes: []string{"deploy:write"}})
		return err
	}

	if status, _, _ := e.do(t, call{method: "PUT", path: "/admin/v1/trust-maps/ops", body: storedMap, header: auth}); status != 428 {
		t.Fatalf("blind PUT = %d, want 428", status)
	}
	status, h, body := e.do(t, call{method: "PUT", path: "/admin/v1/trust-maps/ops", body: storedMap, header: with(map[string]string{"If-None-Match": "*"})})
	if status != 201 || h.Get("ETag") != `"1"` || body["version"] != 1.0 {
		t.Fatalf("create = %d %v", status, body)
	}
	if err := decide(); err != nil {
		t.Fatalf("created map not in force on this replica: %v", err)
	}
	if status, _, _ := e.do(t, call{method: "PUT", path: "/admin/v1/trust-maps/ops", body: storedMap, header: with(map[string]string{"If-None-Match": "*"})}); status != 412 {
		t.Fatalf("second create = %d, want 412", status)
	}
	status, _, body = e.do(t, call{method: "GET", path: "/admin/v1/trust-maps/ops", header: auth})
	if status != 200 || body["map"].(map[string]any)["id"] != "ops" {
		t.Fatalf("GET = %d %v", status, body)
	}

	invalid := strings.Replace(storedMap, `"https://deploy.example.com/mcp"`, `"http://deploy.example.com/mcp"`, 1)
	status, _, body = e.do(t, call{method: "PUT", path: "/admin/v1/trust-maps/ops", body: invalid, header: with(map[string]string{"If-Match": `"1"`})})
	if status != 400 || body["error"] != "invalid_trust_map" || !strings.Contains(body["problems"].([]any)[0].(string), `store:ops:1: map "ops": grant.audiences[0]: "http://deploy.example.com/mcp" is not an absolute https URI`) {
		t.Fatalf("invalid PUT = %d %v", status, body)
	}
	clash := strings.Replace(storedMap, `"id":"ops"`, `"id":"from-file"`, 1)
	status, _, body = e.do(t, call{method: "PUT", path: "/admin/v1/trust-maps/from-file", body: clash, header: with(map[string]string{"If-None-Match": "*"})})
	if status != 400 || !strings.Contains(strings.Join(toStrings(body["problems"]), "\n"), `"from-file" is also the id of a map in`) {
		t.Fatalf("map clashing with a file map = %d %v", status, body)
	}
	if status, _, _ := e.do(t, call{method: "PUT", path: "/admin/v1/trust-maps/other", body: storedMap, header: with(map[string]string{"If-None-Match": "*"})}); status != 400 {
		t.Fatalf("id mismatch = %d, want 400", status)
	}

	narrowed := strings.Replace(storedMap, `"scopes":["deploy:write"]`, `"scopes":["deploy:read"]`, 1)
	if status, _, _ := e.do(t, call{method: "PUT", path: "/admin/v1/trust-maps/ops", body: narrowed, header: with(map[string]string{"If-Match": `"7"`})}); status != 412 {
		t.Fatalf("stale If-Match = %d, want 412", status)
	}
	status, h, _ = e.do(t, call{method: "PUT", path: "/admin/v1/trust-maps/ops", body: narrowed, header: with(map[string]string{"If-Match": `"1"`})})
	if status != 200 || h.Get("ETag") != `"2"` {
		t.Fatalf("replace = %d", status)
	}
	if err := decide(); err == nil {
		t.Fatal("the replaced map still grants deploy:write")
	}

	status, _, body = e.do(t, call{method: "POST", path: "/admin/v1/explain", header: auth, body: `{"identity":{"provider":"github","subject":"repo:ops/infra:ref:refs/heads/main"},"request":{"audience":"https://deploy.example.com/mcp","scopes":["deploy:write"]}}`})
	if status != 200 || body["denial"] != "scope_not_granted" || body["maps"].([]any)[0].(map[string]any)["outcome"] != `scope "deploy:write" not granted` {
		t.Fatalf("explain = %d %v", status, body)
	}
	if status, _, _ := e.do(t, call{method: "POST", path: "/admin/v1/explain", header: auth, body: `{"identity":{},"bogus":1}`}); status != 400 {
		t.Fatalf("explain with unknown fields = %d", status)
	}

	if status, _, _ := e.do(t, call{method: "DELETE", path: "/admin/v1/trust-maps/ops", header: with(map[string]string{"If-Match": `"1"`})}); status != 412 {
		t.Fatalf("stale DELETE = %d", status)
	}
	if status, _, _ := e.do(t, call{method: "DELETE", path: "/admin/v1/trust-maps/ops", header: with(map[string]string{"If-Match": `"2"`})}); status != 204 {
		t.Fatalf("DELETE = %d", status)
	}
	if status, _, _ := e.do(t, call{method: "GET", path: "/admin/v1/trust-maps/ops", header: auth}); status != 404 {
		t.Fatalf("GET after DELETE = %d", status)
	}
	if n := e.policy.Engine().Len(); n != 1 {
		t.Fatalf("%d maps in force after the delete, want the file's one", n)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestConsents(t *testing.T) {
	e := newEnv(t)
	auth := map[string]string{"Authorization": "Bearer " + e.token(t, iss+"/admin", admin.Scope)}
	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	status, _, body := e.do(t, call{method: "POST", path: "/admin/v1/consents", header: auth,
		body: `{"user":"alice","provider":"corp","client_id":"mail-agent","scopes":["mail:read"],"resources":["HTTPS://Mail.example.com/"],"expires_at":"` + exp + `"}`})
	if status != 201 || body["id"] == "" || body["resources"].([]any)[0] != "https://mail.example.com" {
		t.Fatalf("grant = %d %v", status, body)
	}
	id := body["id"].(string)
	status, _, body = e.do(t, call{method: "GET", path: "/admin/v1/consents?user=alice", header: auth})
	if status != 200 || len(body["consents"].([]any)) != 1 {
		t.Fatalf("list = %d %v", status, body)
	}
	status, _, body = e.do(t, call{method: "POST", path: "/admin/v1/consents", header: auth, body: `{"user":"","client_id":"c","expires_at":"2000-01-01T00:00:00Z"}`})
	if status != 400 || body["error"] != "invalid_consent" || len(body["problems"].([]any)) < 3 {
		t.Fatalf("invalid consent = %d %v", status, body)
	}
	if status, _, _ := e.do(t, call{method: "DELETE", path: "/admin/v1/consents/" + id, header: auth}); status != 204 {
		t.Fatalf("revoke = %d", status)
	}
	_, _, body = e.do(t, call{method: "GET", path: "/admin/v1/consents?user=alice&client_id=mail-agent", header: auth})
	if rev := body["consents"].([]any)[0].(map[string]any)["revoked_at"]; rev == nil || rev == "" {
		t.Fatalf("revoked consent = %v", body)
	}
	if status, _, _ := e.do(t, call{method: "DELETE", path: "/admin/v1/consents/none", header: auth}); status != 404 {
		t.Fatalf("revoke unknown = %d", status)
	}
	if status, _, _ := e.do(t, call{method: "GET", path: "/admin/v1/consents"}); status != 401 {
		t.Fatalf("consents without a token = %d", status)
	}
}

// TestRevocations: administrators revoke one token, or every token of a
// subject or a client issued until now; the store's list says so.
func TestRevocations(t *testing.T) {
	e := newEnv(t)
	auth := map[string]string{"Authorization": "Bearer " + e.token(t, iss+"/admin", admin.Scope)}
	for _, tc := range []struct {
		body   string
		status int
	}{
		{`{"jti":"j-1"}`, 204},
		{`{"subject":"workload:ci/agent"}`, 204},
		{`{"client":"evil-app"}`, 204},
		{`{"jti":"j-2","client":"x"}`, 400},
		{`{}`, 400},
		{`{"kid":"x"}`, 400},
	} {
		if status, _, body := e.do(t, call{method: "POST", path: "/admin/v1/revocations", header: auth, body: tc.body}); status != tc.status {
			t.Errorf("%s: %d %v, want %d", tc.body, status, body, tc.status)
		}
	}
	if status, _, _ := e.do(t, call{method: "POST", path: "/admin/v1/revocations", body: `{"jti":"j-3"}`}); status != 401 {
		t.Fatalf("unauthenticated: %d", status)
	}
	issued := time.Now().Add(-time.Minute)
	for _, tc := range []struct {
		jti, sub, client string
		want             bool
	}{{"j-1", "x", "y", true}, {"j-9", "workload:ci/agent", "y", true}, {"j-9", "x", "evil-app", true}, {"j-3", "x", "y", false}} {
		if got, err := e.st.Revoked(context.Background(), tc.jti, tc.sub, tc.client, issued); err != nil || got != tc.want {
			t.Errorf("%+v: %v %v", tc, got, err)
		}
	}
}

// TestRevokedAdminToken (finding 1 of the decision review): an admin token
// revoked by jti, by subject or by client, here or at another replica, no
// longer reads or writes trust maps; a single-use admin token is taken
// once. Another replica's revocation is seen once the cache's bound has
// passed; this replica's at once.
func TestRevokedAdminToken(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		revoke func(e *env, tok string) // the revocation, made at another replica
	}{
		{"by jti", func(e *env, tok string) {
			v, _ := e.iss.Inspect(tok)
			e.other.Revoke(ctx, exchange.RevokeJTI, v.ID, time.Now(), v.ExpiresAt)
		}},
		{"by subject", func(e *env, _ string) {
			e.other.Revoke(ctx, exchange.RevokeSubject, "workload:github/repo:ops/infra", time.Now(), time.Now().Add(time.Hour))
		}},
		{"by client", func(e *env, _ string) {
			e.other.Revoke(ctx, exchange.RevokeClient, "terraform", time.Now(), time.Now().Add(time.Hour))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			tok := e.token(t, iss+"/admin", admin.Scope)
			auth := map[string]string{"Authorization": "Bearer " + tok}
			if status, _, body := e.do(t, call{method: "GET", path: "/admin/v1/trust-maps", header: auth}); status != 200 {
				t.Fatalf("before: %d %v", status, body)
			}
			tc.revoke(e, tok)
			// Past the cache's bound (the acceptor's default).
			deadline := time.Now().Add(exchange.DefaultRevocationCacheFor + 2*time.Second)
			for {
				status, _, _ := e.do(t, call{method: "GET", path: "/admin/v1/trust-maps", header: auth})
				if status == 401 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("revoked admin token still answered %d past the cache's bound", status)
				}
			}
			m := `{"match":{"provider":"p","subject":"attacker"},"grant":{"client_id":"x","audiences":["` + iss + `/admin"],"scopes":["mcpsts:admin"]}}`
			if status, _, body := e.do(t, call{method: "PUT", path: "/admin/v1/trust-maps/escalate", header: auth, body: m}); status != 401 {
				t.Fatalf("revoked admin token wrote a trust map: %d %v", status, body)
			}
		})
	}
	t.Run("revoked through this admin API is refused at once", func(t *testing.T) {
		e := newEnv(t)
		tok := e.token(t, iss+"/admin", admin.Scope)
		v, _ := e.iss.Inspect(tok)
		auth := map[string]string{"Authorization": "Bearer " + tok}
		if status, _, _ := e.do(t, call{method: "GET", path: "/admin/v1/trust-maps", header: auth}); status != 200 {
			t.Fatalf("before: %d", status)
		}
		if status, _, body := e.do(t, call{method: "POST", path: "/admin/v1/revocations", header: auth, body: `{"jti":"` + v.ID + `"}`}); status != 204 {
			t.Fatalf("revoke: %d %v", status, body)
		}
		if status, _, _ := e.do(t, call{method: "GET", path: "/admin/v1/trust-maps", header: auth}); status != 401 {
			t.Fatalf("after its own revocation: %d, want 401", status)
		}
	})
	t.Run("single use", func(t *testing.T) {
		e := newEnv(t)
		tok, err := e.iss.Mint(ctx, issuer.Grant{Subject: "github/repo:ops/infra", Audience: iss + "/admin", ClientID: "terraform", Scopes: []string{admin.Scope}, SingleUse: true})
		if err != nil {
			t.Fatal(err)
		}
		auth := map[string]string{"Authorization": "Bearer " + tok.Raw}
		for i, want := range []int{200, 401} {
			if status, _, _ := e.do(t, call{method: "GET", path: "/admin/v1/trust-maps", header: auth}); status != want {
				t.Fatalf("use %d: %d, want %d", i+1, status, want)
			}
		}
	})
}

// fixedPlaces locates every address in Germany, but 192.0.2.0/24 nowhere.
type fixedPlaces struct{}

func (fixedPlaces) Place(a netip.Addr) trustmaps.Place {
	if netip.MustParsePrefix("192.0.2.0/24").Contains(a) {
		return trustmaps.Place{}
	}
	return trustmaps.Place{Country: "DE", Continent: "EU", ASN: 3320}
}

// TestExplainPostureAndPlace: a map that uses geolocation is refused by a
// server without a database and taken by one with it; the explain trace
// shows the posture given and the place of the source address.
func TestExplainPostureAndPlace(t *testing.T) {
	const doc = `{"id":"eu","match":{"provider":"k8s","subject":"agent","conditions":["context.edr.compliant == true","ip(request.source_ip).in_country([\"DE\"])"]},"grant":{"client_id":"agent","audiences":["https://tools.example/mcp"]}}`
	create := func(e *env) (int, map[string]any) {
		auth := map[string]string{"Authorization": "Bearer " + e.token(t, iss+"/admin", admin.Scope), "If-None-Match": "*"}
		status, _, body := e.do(t, call{method: "PUT", path: "/admin/v1/trust-maps/eu", body: doc, header: auth})
		return status, body
	}
	if status, body := create(newEnv(t)); status != 400 || !strings.Contains(fmt.Sprint(body), "no geolocation database is configured (geoip.database)") {
		t.Fatalf("without a database: %d %v", status, body)
	}
	e := newEnvWith(t, func(c *admin.Config) {
		p, err := trustmaps.NewPolicyWith(context.Background(), c.Source, trustmaps.Options{Places: fixedPlaces{}}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Policy = p
	})
	if status, body := create(e); status != 201 {
		t.Fatalf("with a database: %d %v", status, body)
	}
	auth := map[string]string{"Authorization": "Bearer " + e.token(t, iss+"/admin", admin.Scope)}
	for _, tc := range []struct {
		ip, context string
		denial      string
	}{
		{"81.2.69.160", `{"edr":{"compliant":true}}`, ""},
		{"192.0.2.1", `{"edr":{"compliant":true}}`, "no_matching_map"},
		{"81.2.69.160", `{"edr":{"compliant":false}}`, "no_matching_map"},
	} {
		status, _, body := e.do(t, call{method: "POST", path: "/admin/v1/explain", header: auth,
			body: `{"identity":{"provider":"k8s","subject":"agent"},"request":{"audience":"https://tools.example/mcp","source_ip":"` + tc.ip + `","context":` + tc.context + `}}`})
		b, _ := json.Marshal(body)
		if status != 200 || fmt.Sprint(body["denial"]) != tc.denial && !(tc.denial == "" && body["denial"] == nil) ||
			!strings.Contains(string(b), `"posture":[{"read":["compliant"],"source":"edr","status":"given"}]`) ||
			!strings.Contains(string(b), `"source_ip":"`+tc.ip+`"`) {
			t.Fatalf("%s %s: %d %s", tc.ip, tc.context, status, b)
		}
	}
}

// TestDocumentWritesInForceHere (issue 32): a document written through the
// admin API (a client) is in force at once on the replica that took the
// write: Changed is called after every put and delete that succeeded, and
// not after a refused one.
func TestDocumentWritesInForceHere(t *testing.T) {
	var changed atomic.Int32
	e := newEnvWith(t, func(c *admin.Config) {
		c.Clients = &admin.Documents{Repo: c.Repo.(*store.Store).Clients(), Changed: func(context.Context) { changed.Add(1) },
			Check: func(_ context.Context, id string, doc []byte) []string {
				if id == "refused" {
					return []string{"refused"}
				}
				return nil
			}}
	})
	auth := map[string]string{"Authorization": "Bearer " + e.token(t, iss+"/admin", "mcpsts:admin"), "Content-Type": "application/json", "If-None-Match": "*"}
	doc := `{"client_id":"desktop","grant_types":["authorization_code"],"redirect_uris":["http://127.0.0.1/cb"]}`
	if status, _, body := e.do(t, call{method: "PUT", path: "/admin/v1/clients/desktop", body: doc, header: auth}); status != 201 || changed.Load() != 1 {
		t.Fatalf("put: %d %v, changed %d", status, body, changed.Load())
	}
	if status, _, _ := e.do(t, call{method: "PUT", path: "/admin/v1/clients/refused", body: doc, header: auth}); status != 400 || changed.Load() != 1 {
		t.Fatalf("a refused put: %d, changed %d", status, changed.Load())
	}
	del := map[string]string{"Authorization": auth["Authorization"], "If-Match": `"1"`}
	if status, _, body := e.do(t, call{method: "DELETE", path: "/admin/v1/clients/desktop", header: del}); status != 204 || changed.Load() != 2 {
		t.Logf("%v", body)
		t.Fatalf("delete: %d, changed %d", status, changed.Load())
	}
}
