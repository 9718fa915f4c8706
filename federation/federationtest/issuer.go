// Package federationtest runs fake OIDC issuers for tests: real TLS servers
// with discovery and a JWKS, real signing keys that can be rotated, and an
// off switch.
package federationtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpsts/mcpsts/federation"
)

// Issuer is a fake OIDC issuer on a loopback TLS server.
type Issuer struct {
	URL string // the issuer identifier: https://127.0.0.1:port

	srv *httptest.Server

	mu      sync.Mutex
	keys    []signingKey // the published set; keys[0] signs
	maxAge  int          // Cache-Control max-age of the JWKS; -1 for none
	down    bool
	docIss  string // issuer named in the discovery document, if not URL
	counter map[string]*atomic.Int64
	login   *login // nil: the issuer signs nobody in
}

type signingKey struct {
	kid string
	alg string
	key crypto.Signer
}

// NewIssuer starts an issuer with one RS256 key. It stops when t ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	is := &Issuer{maxAge: 300, counter: map[string]*atomic.Int64{
		"discovery": {}, "jwks": {}, "refused": {},
	}}
	is.srv = httptest.NewTLSServer(http.HandlerFunc(is.serve))
	t.Cleanup(is.srv.Close)
	is.URL = is.srv.URL
	is.AddKey("RS256")
	return is
}

// CAPEM is the PEM certificate to trust for the issuer's TLS.
func (is *Issuer) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw})
}

// Transport trusts the issuer's TLS certificate.
func (is *Issuer) Transport() http.RoundTripper { return is.srv.Client().Transport }

// Fetcher is a federation.Fetcher that trusts the issuer.
func (is *Issuer) Fetcher() *federation.Fetcher {
	return federation.NewFetcher(federation.FetcherOptions{Transport: is.Transport()})
}

// AddKey generates a key for alg (RS256, ES256), puts it first (it signs
// from now on) and publishes it beside the others. It returns its kid.
func (is *Issuer) AddKey(alg string) string {
	var k crypto.Signer
	var err error
	switch alg {
	case "ES256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		panic(err)
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	var r [6]byte
	rand.Read(r[:])
	kid := fmt.Sprintf("key-%d-%x", len(is.keys)+1, r)
	is.keys = append([]signingKey{{kid: kid, alg: alg, key: k}}, is.keys...)
	return kid
}

// DropOldKeys unpublishes every key but the one that signs.
func (is *Issuer) DropOldKeys() {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = is.keys[:1]
}

// PublicKey returns the public key that signs now.
func (is *Issuer) PublicKey() crypto.PublicKey {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.keys[0].key.Public()
}

// SetDown makes every request fail with 503 (true) or be served (false).
func (is *Issuer) SetDown(down bool) { is.mu.Lock(); is.down = down; is.mu.Unlock() }

// SetMaxAge sets the JWKS Cache-Control max-age in seconds; -1 sends none.
func (is *Issuer) SetMaxAge(s int) { is.mu.Lock(); is.maxAge = s; is.mu.Unlock() }

// SetDiscoveryIssuer makes the discovery document name another issuer.
func (is *Issuer) SetDiscoveryIssuer(iss string) { is.mu.Lock(); is.docIss = iss; is.mu.Unlock() }

// Requests counts the requests of one kind: "discovery", "jwks", or
// "refused" (any request while the issuer is down).
func (is *Issuer) Requests(what string) int64 { return is.counter[what].Load() }

func (is *Issuer) serve(w http.ResponseWriter, r *http.Request) {
	if l := is.loginEnabled(); l != nil && strings.HasPrefix(r.URL.Path, "/login/") {
		l.serve(is, w, r)
		return
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.down {
		is.counter["refused"].Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		is.counter["discovery"].Add(1)
		iss := is.URL
		if is.docIss != "" {
			iss = is.docIss
		}
		doc := map[string]any{"issuer": iss, "jwks_uri": is.URL + "/keys"}
		if is.login != nil {
			doc["authorization_endpoint"], doc["token_endpoint"] = is.URL+"/login/authorize", is.URL+"/login/token"
			doc["code_challenge_methods_supported"] = []string{"S256"}
		}
		json.NewEncoder(w).Encode(doc)
	case "/keys":
		is.counter["jwks"].Add(1)
		var set jose.JSONWebKeySet
		for _, k := range is.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.key.Public(), KeyID: k.kid, Algorithm: k.alg, Use: "sig"})
		}
		if is.maxAge >= 0 {
			w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", is.maxAge))
		}
		json.NewEncoder(w).Encode(set)
	default:
		http.NotFound(w, r)
	}
}

// KeyID is the kid of the key that signs now.
func (is *Issuer) KeyID() string {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.keys[0].kid
}

// SignRaw signs exactly the given header and payload bytes (base64url
// encoding them) with the current key, for tokens no library would make.
func (is *Issuer) SignRaw(header, payload []byte) string {
	is.mu.Lock()
	k := is.keys[0]
	is.mu.Unlock()
	input := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	sig, err := jwt.GetSigningMethod(k.alg).Sign(input, k.key)
	if err != nil {
		panic(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// JWKS returns the published key set as JSON (for pinning).
func (is *Issuer) JWKS() []byte {
	is.mu.Lock()
	defer is.mu.Unlock()
	var set jose.JSONWebKeySet
	for _, k := range is.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.key.Public(), KeyID: k.kid, Algorithm: k.alg, Use: "sig"})
	}
	b, _ := json.Marshal(set)
	return b
}

// Sign signs claims with the current key; header adds or overrides header
// members (a nil value deletes one).
func (is *Issuer) Sign(claims map[string]any, header map[string]any) string {
	is.mu.Lock()
	k := is.keys[0]
	is.mu.Unlock()
	method := jwt.GetSigningMethod(k.alg)
	tok := jwt.NewWithClaims(method, jwt.MapClaims(claims))
	tok.Header["kid"] = k.kid
	for name, v := range header {
		if v == nil {
			delete(tok.Header, name)
			continue
		}
		tok.Header[name] = v
	}
	s, err := tok.SignedString(k.key)
	if err != nil {
		panic(err)
	}
	return s
}
