package oidc_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/internal/store"
)

// The fixtures' tokens are centred on iat = 2026-01-15T10:00:00Z.
var now = time.Unix(1768471200, 0).UTC().Add(time.Minute)

const brokerAud = "https://mcpsts.example.com"

type env struct {
	is, other *federationtest.Issuer
	v         *oidc.Verifier
	clock     *atomic.Pointer[time.Time]
}

func (e *env) now() time.Time { return *e.clock.Load() }

func (e *env) advance(d time.Duration) {
	t := e.now().Add(d)
	e.clock.Store(&t)
}

func provider(t testing.TB, is *federationtest.Issuer, name string, now func() time.Time) *federation.Provider {
	t.Helper()
	p, err := federation.NewProvider(federation.ProviderConfig{
		Name: name, Issuer: is.URL, Discovery: true, Fetcher: is.Fetcher(), Clock: now,
		Algorithms: []string{"RS256", "ES256"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newEnv trusts two issuers: is (provider "ci") and other ("other").
func newEnv(t testing.TB, mutate func(*oidc.ProviderConfig)) *env {
	t.Helper()
	e := &env{is: federationtest.NewIssuer(t), other: federationtest.NewIssuer(t), clock: &atomic.Pointer[time.Time]{}}
	start := now
	e.clock.Store(&start)
	pc := oidc.ProviderConfig{Keys: provider(t, e.is, "ci", e.now), Audiences: []string{brokerAud}}
	if mutate != nil {
		mutate(&pc)
	}
	v, err := oidc.New(e.now, pc, oidc.ProviderConfig{Keys: provider(t, e.other, "other", e.now), Audiences: []string{brokerAud}})
	if err != nil {
		t.Fatal(err)
	}
	e.v = v
	return e
}

func (e *env) claims() map[string]any {
	n := e.now().Unix()
	return map[string]any{"iss": e.is.URL, "sub": "workload-1", "aud": brokerAud, "iat": n, "nbf": n, "exp": n + 600, "jti": "j-1"}
}

func (e *env) attest(token string) (attest.Identity, error) {
	return e.v.Attest(context.Background(), attest.Evidence{Type: "urn:ietf:params:oauth:token-type:jwt", Token: []byte(token)})
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestAttestValid(t *testing.T) {
	e := newEnv(t, nil)
	c := e.claims()
	c["aud"] = []string{"https://someone-else.example", brokerAud}
	c["nested"] = map[string]any{"team": "billing"}
	id, err := e.attest(e.is.Sign(c, nil))
	if err != nil {
		t.Fatal(err)
	}
	if id.Kind != "oidc" || id.Provider != "ci" || id.Issuer != e.is.URL || id.Subject != "workload-1" ||
		!id.Expiry.Equal(time.Unix(c["exp"].(int64), 0)) || id.ReplayKey != "" {
		t.Fatalf("identity = %+v", id)
	}
	if id.Attributes["nested"].(map[string]any)["team"] != "billing" {
		t.Fatalf("nested claims not reachable: %v", id.Attributes)
	}
}

// TestAttestBadInput asserts the exact reason of every refusal.
func TestAttestBadInput(t *testing.T) {
	e := newEnv(t, nil)
	trap, trapHits := trapListener(t)
	attacker := federationtest.NewIssuer(t) // an untrusted key pair
	pubPEM := func() []byte {
		der, _ := x509.MarshalPKIXPublicKey(e.is.PublicKey())
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	with := func(mut func(c map[string]any)) map[string]any {
		c := e.claims()
		mut(c)
		return c
	}
	n := e.now().Unix()
	attackerJWK, _ := json.Marshal(jose.JSONWebKey{Key: attacker.PublicKey(), KeyID: attacker.KeyID()})

	tests := []struct {
		name   string
		token  func() string
		reason string
		kind   error
	}{
		{"alg none", func() string {
			return b64(map[string]any{"alg": "none", "typ": "JWT"}) + "." + b64(e.claims()) + "."
		}, "algorithm_not_allowed", attest.ErrInvalidEvidence},
		{"HS256 with the issuer's public key as secret", func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(e.claims()))
			tok.Header["kid"] = e.is.KeyID()
			s, _ := tok.SignedString(pubPEM())
			return s
		}, "algorithm_not_allowed", attest.ErrInvalidEvidence},
		{"kid of another trusted issuer", func() string {
			return e.other.Sign(e.claims(), nil) // iss is e.is, key and kid are other's
		}, "unknown_key", attest.ErrInvalidEvidence},
		{"jku, x5u, x5c and jwk name the attacker's key", func() string {
			return attacker.Sign(e.claims(), map[string]any{"jku": trap + "/jwks", "x5u": trap + "/cert", "jwk": json.RawMessage(attackerJWK), "x5c": []string{base64.StdEncoding.EncodeToString([]byte("attacker certificate"))}})
		}, "unknown_key", attest.ErrInvalidEvidence},
		{"expired", func() string {
			return e.is.Sign(with(func(c map[string]any) { c["exp"] = n - 120 }), nil)
		}, "token_expired", attest.ErrInvalidEvidence},
		{"nbf in the future", func() string {
			return e.is.Sign(with(func(c map[string]any) { c["nbf"] = n + 300 }), nil)
		}, "token_not_yet_valid", attest.ErrInvalidEvidence},
		{"iat in the future", func() string {
			return e.is.Sign(with(func(c map[string]any) { c["iat"] = n + 300 }), nil)
		}, "token_issued_in_future", attest.ErrInvalidEvidence},
		{"iat too old", func() string {
			return e.is.Sign(with(func(c map[string]any) { c["iat"] = n - 25*3600 }), nil)
		}, "token_too_old", attest.ErrInvalidEvidence},
		{"no iat", func() string {
			return e.is.Sign(with(func(c map[string]any) { delete(c, "iat") }), nil)
		}, "missing_claim", attest.ErrInvalidEvidence},
		{"wrong aud", func() string {
			return e.is.Sign(with(func(c map[string]any) { c["aud"] = "https://other-service.example" }), nil)
		}, "wrong_audience", attest.ErrInvalidEvidence},
		{"no aud", func() string {
			return e.is.Sign(with(func(c map[string]any) { delete(c, "aud") }), nil)
		}, "missing_claim", attest.ErrInvalidEvidence},
		{"wrong iss", func() string {
			return e.is.Sign(with(func(c map[string]any) { c["iss"] = "https://evil.example" }), nil)
		}, "untrusted_issuer", attest.ErrInvalidEvidence},
		{"iss differs in case", func() string {
			return e.is.Sign(with(func(c map[string]any) { c["iss"] = strings.ToUpper(e.is.URL) }), nil)
		}, "untrusted_issuer", attest.ErrInvalidEvidence},
		{"iss with a trailing slash", func() string {
			return e.is.Sign(with(func(c map[string]any) { c["iss"] = e.is.URL + "/" }), nil)
		}, "untrusted_issuer", attest.ErrInvalidEvidence},
		{"no exp", func() string {
			return e.is.Sign(with(func(c map[string]any) { delete(c, "exp") }), nil)
		}, "missing_claim", attest.ErrInvalidEvidence},
		{"no sub", func() string {
			return e.is.Sign(with(func(c map[string]any) { delete(c, "sub") }), nil)
		}, "missing_claim", attest.ErrInvalidEvidence},
		{"over 16 KiB", func() string {
			return e.is.Sign(with(func(c map[string]any) { c["pad"] = strings.Repeat("x", 16<<10) }), nil)
		}, "token_too_large", attest.ErrInvalidEvidence},
		{"malformed base64", func() string {
			s := e.is.Sign(e.claims(), nil)
			return s[:10] + "!!" + s[12:]
		}, "malformed_token", attest.ErrInvalidEvidence},
		{"payload not JSON", func() string {
			return e.is.SignRaw([]byte(`{"alg":"RS256","kid":"`+e.is.KeyID()+`"}`), []byte("not json"))
		}, "malformed_token", attest.ErrInvalidEvidence},
		{"header not JSON", func() string { return "bm90IGpzb24.e30.sig" }, "malformed_token", attest.ErrInvalidEvidence},
		{"duplicate header member", func() string {
			p, _ := json.Marshal(e.claims())
			return e.is.SignRaw([]byte(`{"alg":"RS256","kid":"`+e.is.KeyID()+`","alg":"RS256"}`), p)
		}, "malformed_token", attest.ErrInvalidEvidence},
		{"crit header", func() string {
			return e.is.Sign(e.claims(), map[string]any{"crit": []string{"exp"}})
		}, "unsupported_token", attest.ErrInvalidEvidence},
		{"bad signature", func() string {
			s := e.is.Sign(e.claims(), nil)
			other := e.is.Sign(with(func(c map[string]any) { c["sub"] = "admin" }), nil)
			return other[:strings.LastIndex(other, ".")] + s[strings.LastIndex(s, "."):]
		}, "bad_signature", attest.ErrInvalidEvidence},
		{"not a JWT", func() string { return "hello" }, "malformed_token", attest.ErrInvalidEvidence},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.attest(tt.token())
			if !errors.Is(err, tt.kind) || attest.ReasonOf(err) != tt.reason {
				t.Fatalf("Attest = %v (reason %q), want %v with reason %q", err, attest.ReasonOf(err), tt.kind, tt.reason)
			}
		})
	}
	if n := trapHits.Load(); n != 0 {
		t.Fatalf("the trap listener saw %d connections: a header URL was followed", n)
	}

	t.Run("trusted token with jku and x5u headers is verified with the configured keys only", func(t *testing.T) {
		if _, err := e.attest(e.is.Sign(e.claims(), map[string]any{"jku": trap, "x5u": trap})); err != nil {
			t.Fatal(err)
		}
		if n := trapHits.Load(); n != 0 {
			t.Fatalf("trap saw %d connections", n)
		}
	})
}

// trapListener accepts TCP connections and counts them.
func trapListener(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var hits atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			hits.Add(1)
			c.Close()
		}
	}()
	return "https://" + ln.Addr().String(), &hits
}

func TestTypRequired(t *testing.T) {
	e := newEnv(t, func(pc *oidc.ProviderConfig) { pc.Typ = "JWT" })
	if _, err := e.attest(e.is.Sign(e.claims(), map[string]any{"typ": "at+jwt"})); attest.ReasonOf(err) != "wrong_token_type" {
		t.Fatalf("typ at+jwt = %v, want wrong_token_type", err)
	}
	if _, err := e.attest(e.is.Sign(e.claims(), map[string]any{"typ": "JWT"})); err != nil {
		t.Fatal(err)
	}
}

func TestIssuerRotationAndOutage(t *testing.T) {
	e := newEnv(t, nil)
	if _, err := e.attest(e.is.Sign(e.claims(), nil)); err != nil {
		t.Fatal(err)
	}
	// Mid-test rotation: the issuer signs with a new key and drops the old.
	e.is.AddKey("ES256")
	e.is.DropOldKeys()
	e.advance(31 * time.Second)
	if _, err := e.attest(e.is.Sign(e.claims(), nil)); err != nil {
		t.Fatalf("token signed with the rotated key: %v", err)
	}
	// Mid-test outage: keys already fetched keep verifying past their
	// refresh time.
	e.is.SetDown(true)
	e.advance(10 * time.Minute)
	if _, err := e.attest(e.is.Sign(e.claims(), nil)); err != nil {
		t.Fatalf("with the issuer down and a cached key set: %v", err)
	}
	// A provider that never loaded its keys cannot verify: unavailable.
	_, err := e.attest(e.other.Sign(with(e.claims(), "iss", e.other.URL), nil))
	if err != nil {
		t.Fatalf("other issuer: %v", err)
	}
	e.other.SetDown(true)
	fresh := newEnv(t, nil)
	fresh.is.SetDown(true)
	_, err = fresh.attest(fresh.is.Sign(fresh.claims(), nil))
	if !errors.Is(err, attest.ErrUnavailable) || attest.ReasonOf(err) != "issuer_keys_unavailable" {
		t.Fatalf("issuer down at first use = %v, want ErrUnavailable", err)
	}
}

func with(c map[string]any, k string, v any) map[string]any { c[k] = v; return c }

// fixture returns the payload of a claims fixture, re-based on the issuer,
// audience and clock of e.
func fixture(t *testing.T, e *env, name string) map[string]any {
	t.Helper()
	c := rawFixture(t, name)
	c["iss"], c["aud"] = e.is.URL, brokerAud
	return c
}

// rawFixture returns the payload of a claims fixture as it is.
func rawFixture(t *testing.T, name string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Payload map[string]any }
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	return f.Payload
}

func TestKubernetesPreset(t *testing.T) {
	e := newEnv(t, func(pc *oidc.ProviderConfig) { pc.Preset = oidc.Kubernetes })
	c := fixture(t, e, "kubernetes-projected-sa.json")
	c["aud"] = []string{brokerAud} // Kubernetes sends aud as an array
	id, err := e.attest(e.is.Sign(c, nil))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"namespace": "payments", "service_account": "token-client",
		"pod_name": "token-client-6d8f9c7b5-x2k4p", "pod_uid": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
		"node_name": "node-pool-a-7f3k2", "node_uid": "0c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
		"service_account_uid": "9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b",
	}
	for k, v := range want {
		if id.Attributes[k] != v {
			t.Errorf("attribute %s = %v, want %s", k, id.Attributes[k], v)
		}
	}
	if id.Subject != "system:serviceaccount:payments:token-client" || id.ReplayKey != "" {
		t.Errorf("identity = %+v", id)
	}

	bad := fixture(t, e, "kubernetes-projected-sa.json")
	bad["sub"] = "system:node:worker-1"
	if _, err := e.attest(e.is.Sign(bad, nil)); attest.ReasonOf(err) != "not_a_service_account" {
		t.Fatalf("node sub = %v", err)
	}
	mismatch := fixture(t, e, "kubernetes-projected-sa.json")
	mismatch["sub"] = "system:serviceaccount:kube-system:token-client"
	if _, err := e.attest(e.is.Sign(mismatch, nil)); attest.ReasonOf(err) != "invalid_claims" {
		t.Fatalf("sub and kubernetes.io disagree = %v", err)
	}
}

func TestGitHubActionsPreset(t *testing.T) {
	e := newEnv(t, func(pc *oidc.ProviderConfig) { pc.Preset = oidc.GitHubActions })
	c := fixture(t, e, "github-actions-oidc.json")
	id, err := e.attest(e.is.Sign(c, map[string]any{"typ": "JWT", "x5t": "fake-x5t-thumbprint"}))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"repository": "example-org/widget-service", "repository_owner": "example-org", "repository_id": "700000001",
		"ref": "refs/heads/main", "ref_name": "main", "ref_type": "branch", "environment": "production",
		"workflow_ref":       "example-org/widget-service/.github/workflows/deploy.yml@refs/heads/main",
		"job_workflow_ref":   "example-org/shared-workflows/.github/workflows/deploy-reusable.yml@refs/heads/main",
		"event_name":         "push",
		"runner_environment": "github-hosted",
		"ref_protected":      true,
	}
	for k, v := range want {
		if id.Attributes[k] != v {
			t.Errorf("attribute %s = %#v, want %#v", k, id.Attributes[k], v)
		}
	}
	delete(c, "repository_id")
	if _, err := e.attest(e.is.Sign(c, nil)); attest.ReasonOf(err) != "missing_claim" {
		t.Fatalf("GitHub token without repository_id = %v", err)
	}
}

func TestGitLabPreset(t *testing.T) {
	e := newEnv(t, func(pc *oidc.ProviderConfig) { pc.Preset = oidc.GitLab })
	id, err := e.attest(e.is.Sign(fixture(t, e, "gitlab-ci-id-token.json"), nil))
	if err != nil {
		t.Fatal(err)
	}
	if id.Attributes["project_path"] != "example-group/widget-service" || id.Attributes["namespace_path"] != "example-group" ||
		id.Attributes["ref_protected"] != true || id.Attributes["environment_protected"] != true || id.Attributes["environment"] != "production" {
		t.Fatalf("attributes = %v", id.Attributes)
	}
}

func TestSingleUse(t *testing.T) {
	e := newEnv(t, func(pc *oidc.ProviderConfig) { pc.SingleUse = true })
	st, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "s.db"), store.WithClock(e.now))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := attest.SingleUse(e.v, st)
	ev := func(tok string) attest.Evidence { return attest.Evidence{Token: []byte(tok)} }
	tok := e.is.Sign(e.claims(), nil)
	id, err := a.Attest(context.Background(), ev(tok))
	if err != nil || id.ReplayKey != "oidc:ci:jti:j-1" {
		t.Fatalf("first use = %+v, %v", id, err)
	}
	if _, err := a.Attest(context.Background(), ev(tok)); !errors.Is(err, attest.ErrReplayed) {
		t.Fatalf("second use = %v, want ErrReplayed", err)
	}
	// Without a jti, the token's hash is the key.
	c := e.claims()
	delete(c, "jti")
	tok2 := e.is.Sign(c, nil)
	id, err = a.Attest(context.Background(), ev(tok2))
	if err != nil || !strings.HasPrefix(id.ReplayKey, "oidc:ci:sha256:") {
		t.Fatalf("first use without jti = %+v, %v", id, err)
	}
	if _, err := a.Attest(context.Background(), ev(tok2)); !errors.Is(err, attest.ErrReplayed) {
		t.Fatalf("second use without jti = %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	is := federationtest.NewIssuer(t)
	p := provider(t, is, "a", nil)
	_, err := oidc.New(nil,
		oidc.ProviderConfig{Keys: p},
		oidc.ProviderConfig{Keys: p, Audiences: []string{"x"}, Preset: "jenkins", Leeway: time.Hour},
		oidc.ProviderConfig{},
	)
	for _, want := range []string{
		"provider a: audiences: at least one is required",
		"provider a: issuer " + is.URL + " is trusted twice",
		`provider a: unknown preset "jenkins"`,
		"provider a: leeway 1h0m0s is out of range",
		"provider 2: no keys",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New error %v lacks %q", err, want)
		}
	}
}

func FuzzAttest(f *testing.F) {
	e := newEnv(f, nil)
	f.Add(e.is.Sign(e.claims(), nil))
	f.Add(e.is.Sign(e.claims(), map[string]any{"crit": []string{"x"}}))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Add(strings.Repeat(".", 100))
	f.Fuzz(func(t *testing.T, token string) {
		id, err := e.attest(token)
		if err == nil && (id.Subject == "" || id.Provider == "") {
			t.Fatalf("accepted a token without subject or provider: %+v", id)
		}
		if err != nil && !errors.Is(err, attest.ErrInvalidEvidence) && !errors.Is(err, attest.ErrUnavailable) {
			t.Fatalf("error of no known kind: %v", err)
		}
	})
}

func TestGooglePreset(t *testing.T) {
	e := newEnv(t, func(pc *oidc.ProviderConfig) { pc.Preset = oidc.Google })
	gce := func() map[string]any { return fixture(t, e, "gce-instance-identity.json") }
	id, err := e.attest(e.is.Sign(gce(), map[string]any{"typ": "JWT"}))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"email": "123456789012-compute@developer.gserviceaccount.com", "email_verified": true,
		"sub": "104857600000000000001", "project_id": "example-project-123456", "project_number": "123456789012",
		"zone": "us-central1-a", "instance_id": "4711000000000000001", "instance_name": "broker-client-1",
		"instance_creation_timestamp": int64(1768384800),
	}
	for k, v := range want {
		if id.Attributes[k] != v {
			t.Errorf("attribute %s = %#v, want %#v", k, id.Attributes[k], v)
		}
	}
	sa, err := e.attest(e.is.Sign(fixture(t, e, "google-sa-id-token.json"), nil))
	if err != nil {
		t.Fatal(err)
	}
	if sa.Attributes["email"] != "token-client@example-project-123456.iam.gserviceaccount.com" || sa.Attributes["project_id"] != nil {
		t.Fatalf("service-account token attributes = %v", sa.Attributes)
	}

	ce := func(c map[string]any) map[string]any {
		return c["google"].(map[string]any)["compute_engine"].(map[string]any)
	}
	tests := []struct {
		name   string
		mut    func(c map[string]any)
		reason string
	}{
		{"unverified email", func(c map[string]any) { c["email_verified"] = false }, "unverified_email"},
		{"email without email_verified", func(c map[string]any) { delete(c, "email_verified") }, "unverified_email"},
		{"email_verified not a bool", func(c map[string]any) { c["email_verified"] = "yes" }, "invalid_claims"},
		{"google not an object", func(c map[string]any) { c["google"] = "gce" }, "invalid_claims"},
		{"no compute_engine", func(c map[string]any) { c["google"] = map[string]any{} }, "invalid_claims"},
		{"no project_id", func(c map[string]any) { delete(ce(c), "project_id") }, "invalid_claims"},
		{"empty zone", func(c map[string]any) { ce(c)["zone"] = "" }, "invalid_claims"},
		{"instance_id a number", func(c map[string]any) { ce(c)["instance_id"] = 4711 }, "invalid_claims"},
		{"project_number a string", func(c map[string]any) { ce(c)["project_number"] = "123" }, "invalid_claims"},
		{"project_number fractional", func(c map[string]any) { ce(c)["project_number"] = 1.5 }, "invalid_claims"},
		{"project_number negative", func(c map[string]any) { ce(c)["project_number"] = -1 }, "invalid_claims"},
		{"no azp", func(c map[string]any) { delete(c, "azp") }, "missing_claim"},
		{"another audience", func(c map[string]any) { c["aud"] = "https://other-broker.example" }, "wrong_audience"},
		{"expired", func(c map[string]any) { c["exp"] = e.now().Add(-time.Hour).Unix() }, "token_expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := gce()
			tc.mut(c)
			if _, err := e.attest(e.is.Sign(c, nil)); attest.ReasonOf(err) != tc.reason {
				t.Fatalf("err = %v, want reason %s", err, tc.reason)
			}
		})
	}
}

// azureEnv trusts one Entra tenant's v1 and v2 issuers, keyed with e.is's
// key set pinned, as the fixtures name them.
func azureEnv(t *testing.T) (*env, *oidc.Verifier) {
	t.Helper()
	e := newEnv(t, nil)
	var pcs []oidc.ProviderConfig
	for i, iss := range []string{"https://sts.windows.net/" + azureTenant + "/", "https://login.microsoftonline.com/" + azureTenant + "/v2.0"} {
		p, err := federation.NewProvider(federation.ProviderConfig{Name: fmt.Sprintf("entra-v%d", i+1), Issuer: iss, JWKS: e.is.JWKS(), Clock: e.now})
		if err != nil {
			t.Fatal(err)
		}
		pcs = append(pcs, oidc.ProviderConfig{Keys: p, Preset: oidc.Azure, MaxTokenAge: 25 * time.Hour,
			Audiences: []string{"https://management.azure.com/", "00000000-4444-4555-8666-000000000005"}})
	}
	v, err := oidc.New(e.now, pcs...)
	if err != nil {
		t.Fatal(err)
	}
	return e, v
}

const azureTenant = "00000000-aaaa-4bbb-8ccc-000000000001"

func TestAzurePreset(t *testing.T) {
	e, v := azureEnv(t)
	attestAz := func(c map[string]any) (attest.Identity, error) {
		return v.Attest(context.Background(), attest.Evidence{Type: "urn:ietf:params:oauth:token-type:jwt", Token: []byte(e.is.Sign(c, nil))})
	}
	want := map[string]any{
		"tid": azureTenant, "oid": "00000000-3333-4444-8555-000000000004", "appid": "00000000-2222-4333-8444-000000000003",
		"subscription": "00000000-1111-4222-8333-000000000002", "resource_group": "example-rg",
		"resource_provider": "Microsoft.ManagedIdentity", "resource_type": "userAssignedIdentities", "resource_name": "token-client-mi",
		"az_resource_provider": "Microsoft.App", "az_resource_type": "containerApps", "az_resource_name": "token-client",
	}
	for _, name := range []string{"azure-managed-identity-v1.json", "azure-managed-identity-v2.json"} {
		id, err := attestAz(rawFixture(t, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for k, val := range want {
			if id.Attributes[k] != val {
				t.Errorf("%s: attribute %s = %#v, want %#v", name, k, id.Attributes[k], val)
			}
		}
	}

	tests := []struct {
		name   string
		mut    func(c map[string]any)
		reason string
	}{
		{"another tenant's tid", func(c map[string]any) { c["tid"] = "00000000-aaaa-4bbb-8ccc-000000000099" }, "wrong_tenant"},
		{"another tenant's issuer", func(c map[string]any) {
			c["iss"] = "https://login.microsoftonline.com/00000000-aaaa-4bbb-8ccc-000000000099/v2.0"
		}, "untrusted_issuer"},
		{"no tid", func(c map[string]any) { delete(c, "tid") }, "missing_claim"},
		{"no oid", func(c map[string]any) { delete(c, "oid") }, "missing_claim"},
		{"empty oid", func(c map[string]any) { c["oid"] = "" }, "invalid_claims"},
		{"appid and azp disagree", func(c map[string]any) { c["appid"] = "00000000-2222-4333-8444-000000000099" }, "invalid_claims"},
		{"malformed xms_mirid", func(c map[string]any) { c["xms_mirid"] = "/subscriptions/x/providers/y" }, "invalid_claims"},
		{"xms_mirid not a string", func(c map[string]any) { c["xms_mirid"] = 7 }, "invalid_claims"},
		{"another audience", func(c map[string]any) { c["aud"] = "https://vault.azure.net" }, "wrong_audience"},
		{"expired", func(c map[string]any) { c["exp"] = e.now().Add(-time.Hour).Unix() }, "token_expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := rawFixture(t, "azure-managed-identity-v2.json")
			tc.mut(c)
			if _, err := attestAz(c); attest.ReasonOf(err) != tc.reason {
				t.Fatalf("err = %v, want reason %s", err, tc.reason)
			}
		})
	}
}

// platformRefusals runs the token-level refusals every cloud preset must
// show on a valid claim set c: a tampered signature, another issuer's token
// with jku/x5u naming a trap (never fetched), an oversized token and a
// malformed one.
func platformRefusals(t *testing.T, e *env, attestFn func(string) (attest.Identity, error), c map[string]any) {
	t.Helper()
	trap, hits := trapListener(t)
	attacker := federationtest.NewIssuer(t)
	valid := e.is.Sign(c, nil)
	forged := maps.Clone(c)
	forged["iss"] = attacker.URL
	big := maps.Clone(c)
	big["padding"] = strings.Repeat("x", oidc.MaxTokenSize)
	tests := []struct{ name, token, reason string }{
		{"tampered signature", valid[:len(valid)-4] + map[bool]string{true: "AAAA", false: "BBBB"}[!strings.HasSuffix(valid, "AAAA")], "bad_signature"},
		{"another issuer", attacker.Sign(forged, map[string]any{"jku": trap, "x5u": trap}), "untrusted_issuer"},
		{"oversized", e.is.Sign(big, nil), "token_too_large"},
		{"malformed", "eyJhbGciOiJSUzI1NiJ9.{not json}.sig", "malformed_token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := attestFn(tc.token); attest.ReasonOf(err) != tc.reason {
				t.Fatalf("err = %v, want reason %s", err, tc.reason)
			}
		})
	}
	if hits.Load() != 0 {
		t.Fatalf("the trap listener was contacted %d times", hits.Load())
	}
}

func TestCloudPresetRefusals(t *testing.T) {
	t.Run("google", func(t *testing.T) {
		e := newEnv(t, func(pc *oidc.ProviderConfig) { pc.Preset = oidc.Google })
		platformRefusals(t, e, e.attest, fixture(t, e, "gce-instance-identity.json"))
	})
	t.Run("azure", func(t *testing.T) {
		e, v := azureEnv(t)
		platformRefusals(t, e, func(tok string) (attest.Identity, error) {
			return v.Attest(context.Background(), attest.Evidence{Type: "urn:ietf:params:oauth:token-type:jwt", Token: []byte(tok)})
		}, rawFixture(t, "azure-managed-identity-v2.json"))
	})
}
