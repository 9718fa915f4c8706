package resource_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/resource"
)

// dpopAnswer is a response's status, error and every challenge.
type dpopAnswer struct {
	status     int
	code       string
	challenges []string
	nonce      string
}

func (f *fixture) dpopCall(t *testing.T, auth string, proofs ...string) dpopAnswer {
	t.Helper()
	req, _ := http.NewRequest("POST", f.srv.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	return dpopAnswer{resp.StatusCode, body.Error, resp.Header.Values("WWW-Authenticate"), resp.Header.Get("DPoP-Nonce")}
}

// TestDPoPAtTheResource: a DPoP-bound token is accepted with the DPoP scheme
// and a proof of its key for this request, once; every other shape is
// refused with the right challenge (RFC 9449 §7).
func TestDPoPAtTheResource(t *testing.T) {
	f := newFixture(t, func(c *resource.Config) { c.DPoP = &resource.DPoP{} })
	key, _ := dpop.GenerateKey()
	s, _ := dpop.NewSigner(key, nil)
	otherKey, _ := dpop.GenerateKey()
	other, _ := dpop.NewSigner(otherKey, nil)
	bound := f.token(map[string]any{"cnf": map[string]any{"jkt": s.JKT()}, "jti": "bound-1"}, nil)
	bearer := f.token(nil, nil)
	proof := func(s *dpop.Signer, method, url, token string) string {
		p, err := s.Proof(method, url, token, "")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := proof(s, "POST", mcpURL, bound)
	if a := f.dpopCall(t, "DPoP "+bound, good); a.status != 200 {
		t.Fatalf("a good proof: %+v", a)
	}
	if c, ok := resource.CallerFromContext(f.last.Load().Context()); !ok || c.Claims.DPoPKey != s.JKT() {
		t.Fatalf("the caller's DPoP key: %+v", c)
	}
	for _, tc := range []struct {
		name   string
		auth   string
		proofs []string
		code   string // in the DPoP challenge, or invalid_token in Bearer's
	}{
		{"the same proof again (jti)", "DPoP " + bound, []string{good}, "invalid_dpop_proof"},
		{"a DPoP-bound token as Bearer", "Bearer " + bound, nil, "invalid_token"},
		{"a DPoP-bound token as Bearer, with a proof", "Bearer " + bound, []string{proof(s, "POST", mcpURL, bound)}, "invalid_token"},
		{"no proof", "DPoP " + bound, nil, "invalid_dpop_proof"},
		{"two proofs", "DPoP " + bound, []string{proof(s, "POST", mcpURL, bound), proof(s, "POST", mcpURL, bound)}, "invalid_dpop_proof"},
		{"a mismatched ath", "DPoP " + bound, []string{proof(s, "POST", mcpURL, bearer)}, "invalid_dpop_proof"},
		{"a key other than cnf.jkt", "DPoP " + bound, []string{proof(other, "POST", mcpURL, bound)}, "invalid_dpop_proof"},
		{"wrong htm", "DPoP " + bound, []string{proof(s, "GET", mcpURL, bound)}, "invalid_dpop_proof"},
		{"wrong htu", "DPoP " + bound, []string{proof(s, "POST", "https://mcp.example.com/other", bound)}, "invalid_dpop_proof"},
		{"a bearer token with the DPoP scheme", "DPoP " + bearer, []string{proof(s, "POST", mcpURL, bearer)}, "invalid_token"},
	} {
		a := f.dpopCall(t, tc.auth, tc.proofs...)
		if a.status != 401 || a.code != tc.code || len(a.challenges) != 2 || !strings.HasPrefix(a.challenges[0], "Bearer ") ||
			!strings.HasPrefix(a.challenges[1], "DPoP ") || !strings.Contains(a.challenges[1], `algs="ES256 ES384 ES512 RS256 PS256 EdDSA"`) {
			t.Errorf("%s: %+v", tc.name, a)
		}
		if tc.code == "invalid_dpop_proof" && !strings.Contains(a.challenges[1], `error="invalid_dpop_proof"`) {
			t.Errorf("%s: the DPoP challenge has no error: %v", tc.name, a.challenges)
		}
	}
	// A bearer token is still accepted where DPoP is not required.
	if a := f.dpopCall(t, "Bearer "+bearer); a.status != 200 {
		t.Fatalf("bearer: %+v", a)
	}
}

// TestDPoPRequiredAndNonces: a server that requires DPoP refuses bearer
// tokens and says so in its metadata; with nonces, a proof without one
// gets use_dpop_nonce and the nonce to use.
func TestDPoPRequiredAndNonces(t *testing.T) {
	nonces := dpop.HMACNonces{Key: []byte("mcp server nonce key")}
	f := newFixture(t, func(c *resource.Config) { c.DPoP = &resource.DPoP{Required: true, Nonces: nonces} })
	key, _ := dpop.GenerateKey()
	s, _ := dpop.NewSigner(key, nil)
	bound := f.token(map[string]any{"cnf": map[string]any{"jkt": s.JKT()}}, nil)
	if a := f.dpopCall(t, "Bearer "+f.token(nil, nil)); a.status != 401 || a.code != "invalid_token" || !strings.Contains(strings.Join(a.challenges, " "), `DPoP error="invalid_token"`) {
		t.Fatalf("a bearer token where DPoP is required: %+v", a)
	}
	p, _ := s.Proof("POST", mcpURL, bound, "")
	a := f.dpopCall(t, "DPoP "+bound, p)
	if a.status != 401 || a.code != "use_dpop_nonce" || a.nonce == "" || !strings.Contains(a.challenges[1], `error="use_dpop_nonce"`) {
		t.Fatalf("no nonce: %+v", a)
	}
	p, _ = s.Proof("POST", mcpURL, bound, a.nonce)
	if a := f.dpopCall(t, "DPoP "+bound, p); a.status != 200 {
		t.Fatalf("with the nonce: %+v", a)
	}
	resp, err := f.srv.Client().Get(f.srv.URL + "/.well-known/oauth-protected-resource/mcp")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md map[string]any
	json.NewDecoder(resp.Body).Decode(&md)
	if md["dpop_bound_access_tokens_required"] != true || md["dpop_signing_alg_values_supported"] == nil {
		t.Fatalf("metadata %v", md)
	}
}
