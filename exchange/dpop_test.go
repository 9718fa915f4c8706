package exchange_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/exchange/authorize"
	"github.com/mcpsts/mcpsts/trustmaps"
)

const tokenURL = broker + "/token"

// withDPoP serves the endpoint with DPoP (and nonces when asked), and a
// map that requires it.
func withDPoP(t *testing.T, e *env, nonces dpop.Nonces) {
	t.Helper()
	eng, err := trustmaps.Compile(trustmaps.Document{Name: "maps.yaml", Data: []byte(maps + `---
id: ci-dpop
match:
  provider: ci
  subject: "repo:example-org/dpop:ref:refs/heads/main"
grant:
  client_id: dpop-ci
  audiences: ["https://payments.example.com/mcp"]
  require_binding: dpop
`)})
	if err != nil {
		t.Fatal(err)
	}
	e.restart(t, func(c *exchange.Config) {
		c.Decider, c.TokenURL = eng, tokenURL
		c.DPoP = &dpop.Verifier{Replay: &memCache{held: map[string]time.Time{}}, Nonces: nonces, Clock: e.clock}
	})
}

func newSigner(t *testing.T, e *env) *dpop.Signer {
	t.Helper()
	k, _ := dpop.GenerateKey()
	s, err := dpop.NewSigner(k, e.clock)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func withProof(proofs ...string) func(*http.Request) {
	return func(r *http.Request) {
		for _, p := range proofs {
			r.Header.Add("DPoP", p)
		}
	}
}

func cnfJKT(t *testing.T, raw string) string {
	t.Helper()
	b, _ := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[1])
	var c struct {
		Cnf map[string]string `json:"cnf"`
	}
	json.Unmarshal(b, &c)
	return c.Cnf["jkt"]
}

// TestDPoPTokenEndpoint: a proof binds the token to its key, with or
// without a map that requires it; a map that requires it refuses a request
// without one; bad proofs are invalid_dpop_proof.
func TestDPoPTokenEndpoint(t *testing.T) {
	e := newEnv(t)
	withDPoP(t, e, nil)
	s := newSigner(t, e)
	proof := func() string {
		p, _ := s.Proof("POST", tokenURL, "", "")
		return p
	}

	res := e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), withProof(proof()))
	if res.status != 200 || res.body["token_type"] != "DPoP" || cnfJKT(t, res.body["access_token"].(string)) != s.JKT() {
		t.Fatalf("with a proof: %d %v", res.status, res.raw)
	}
	res = e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), nil)
	if res.status != 200 || res.body["token_type"] != "Bearer" || cnfJKT(t, res.body["access_token"].(string)) != "" {
		t.Fatalf("without a proof: %d %v", res.status, res.raw)
	}
	const dpopSub = "repo:example-org/dpop:ref:refs/heads/main"
	res = e.post(t, exchangeForm(e.subjectToken(dpopSub, nil)), nil)
	if res.status != 400 || res.body["error"] != "invalid_dpop_proof" || e.check() != "dpop_required" {
		t.Fatalf("a map requiring DPoP, no proof: %d %v", res.status, res.raw)
	}
	res = e.post(t, exchangeForm(e.subjectToken(dpopSub, nil)), withProof(proof()))
	if res.status != 200 || res.body["token_type"] != "DPoP" {
		t.Fatalf("a map requiring DPoP, a proof: %d %v", res.status, res.raw)
	}

	replayed := proof()
	e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), withProof(replayed))
	wrongURL, _ := s.Proof("POST", "https://sts.example.com/other", "", "")
	wrongMethod, _ := s.Proof("GET", tokenURL, "", "")
	stale, _ := (func() (string, error) {
		old := e.now
		e.setNow(e.now.Add(-5 * time.Minute))
		defer func() { e.setNow(old) }()
		return s.Proof("POST", tokenURL, "", "")
	})()
	for _, tc := range []struct {
		name   string
		proofs []string
	}{
		{"a replayed proof", []string{replayed}},
		{"wrong htu", []string{wrongURL}},
		{"wrong htm", []string{wrongMethod}},
		{"stale iat", []string{stale}},
		{"two DPoP headers", []string{proof(), proof()}},
		{"not a JWT", []string{"not-a-proof"}},
	} {
		res := e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), withProof(tc.proofs...))
		if res.status != 400 || res.body["error"] != "invalid_dpop_proof" || e.check() != "dpop_proof" {
			t.Errorf("%s: %d %s", tc.name, res.status, res.raw)
		}
	}
}

// TestDPoPNonce: with nonces required, a proof without one gets
// use_dpop_nonce and a DPoP-Nonce header; with it, a token and the next
// nonce.
func TestDPoPNonce(t *testing.T) {
	e := newEnv(t)
	nonces := dpop.HMACNonces{Key: []byte("shared"), Clock: e.clock}
	withDPoP(t, e, nonces)
	s := newSigner(t, e)
	p, _ := s.Proof("POST", tokenURL, "", "")
	res := e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), withProof(p))
	nonce := res.header.Get("DPoP-Nonce")
	if res.status != 400 || res.body["error"] != "use_dpop_nonce" || nonce == "" {
		t.Fatalf("no nonce: %d %s %v", res.status, res.raw, res.header)
	}
	p, _ = s.Proof("POST", tokenURL, "", nonce)
	res = e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), withProof(p))
	if res.status != 200 || res.body["token_type"] != "DPoP" || res.header.Get("DPoP-Nonce") == "" {
		t.Fatalf("with the nonce: %d %s", res.status, res.raw)
	}
	e.setNow(e.now.Add(11 * time.Minute))
	p, _ = s.Proof("POST", tokenURL, "", nonce)
	if res := e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), withProof(p)); res.status != 400 || res.body["error"] != "use_dpop_nonce" {
		t.Fatalf("a stale nonce: %d %s", res.status, res.raw)
	}
}

// TestDPoPBrowserGrants: a code requested with dpop_jkt is redeemed only
// with a proof of that key; a refresh token issued with a proof is used
// only with a proof of the same key (a refusal revokes the family).
func TestDPoPBrowserGrants(t *testing.T) {
	b := newBrowserEnv(t)
	b.restart(t, func(c *exchange.Config) {
		c.Consents, c.Authorizations = b.st, b.st
		c.TokenURL = tokenURL
		c.DPoP = &dpop.Verifier{Replay: &memCache{held: map[string]time.Time{}}, Clock: b.clock}
	})
	s, other := newSigner(t, b.env), newSigner(t, b.env)
	proof := func(s *dpop.Signer) func(*http.Request) {
		p, _ := s.Proof("POST", tokenURL, "", "")
		return withProof(p)
	}
	bound := func() string {
		return b.code(t, "fam-"+authorize.Random(8), func(c *authorize.Code) { c.JKT = s.JKT() })
	}
	for _, tc := range []struct {
		name string
		mut  func(*http.Request)
	}{
		{"no proof", nil},
		{"another key's proof", proof(other)},
	} {
		res := b.post(t, redeem(bound()), tc.mut)
		if res.status != 400 || res.body["error"] != "invalid_dpop_proof" {
			t.Errorf("a dpop_jkt code, %s: %d %s", tc.name, res.status, res.raw)
		}
	}
	res := b.post(t, redeem(bound()), proof(s))
	if res.status != 200 || res.body["token_type"] != "DPoP" || res.body["refresh_token"] == nil {
		t.Fatalf("a dpop_jkt code with its key: %d %s", res.status, res.raw)
	}
	refresh := res.body["refresh_token"].(string)
	res = b.post(t, refreshForm(refresh), proof(s))
	if res.status != 200 || res.body["token_type"] != "DPoP" || cnfJKT(t, res.body["access_token"].(string)) != s.JKT() {
		t.Fatalf("refresh with the key: %d %s", res.status, res.raw)
	}
	next := res.body["refresh_token"].(string)
	res = b.post(t, refreshForm(next), nil)
	if res.status != 400 || res.body["error"] != "invalid_dpop_proof" {
		t.Fatalf("refresh without a proof: %d %s", res.status, res.raw)
	}
	// The refusal revoked the family: the successor's successor is gone.
	if res := b.post(t, refreshForm(next), proof(s)); res.status != 400 || res.body["error"] != "invalid_grant" {
		t.Fatalf("after a refused refresh: %d %s", res.status, res.raw)
	}
}
