package dpop_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/dpop"
)

// memReplay is a replay cache that holds each key until the time its
// claim names, on its clock (nil: the fixed test time), as the store does.
type memReplay struct {
	mu    sync.Mutex
	seen  map[string]time.Time
	clock func() time.Time
}

func newMemReplay(clock func() time.Time) *memReplay {
	if clock == nil {
		clock = func() time.Time { return now }
	}
	return &memReplay{seen: map[string]time.Time{}, clock: clock}
}

func (m *memReplay) Claim(_ context.Context, key string, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u, ok := m.seen[key]; ok && m.clock().Before(u) {
		return attest.ErrReplayed
	}
	m.seen[key] = until
	return nil
}

const tokenURL = "https://sts.example.com/token"

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// craft signs header and payload with key as ES256 (or HS256 with a
// []byte key), whatever they hold.
func craft(header, payload map[string]any, key any) string {
	input := b64(header) + "." + b64(payload)
	var sig []byte
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		sum := sha256.Sum256([]byte(input))
		r, s, _ := ecdsa.Sign(rand.Reader, k, sum[:])
		sig = append(pad(r), pad(s)...)
	case []byte:
		m := hmac.New(sha256.New, k)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case nil:
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func pad(n *big.Int) []byte {
	b := make([]byte, 32)
	return n.FillBytes(b)
}

func publicJWK(k *ecdsa.PrivateKey) map[string]any {
	j, _ := json.Marshal(jose.JSONWebKey{Key: k.Public()})
	var m map[string]any
	json.Unmarshal(j, &m)
	return m
}

func privateJWK(k *ecdsa.PrivateKey) map[string]any {
	j, _ := json.Marshal(jose.JSONWebKey{Key: k})
	var m map[string]any
	json.Unmarshal(j, &m)
	return m
}

func TestVerify(t *testing.T) {
	key, _ := dpop.GenerateKey()
	other, _ := dpop.GenerateKey()
	signer, err := dpop.NewSigner(key, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	jkt := signer.JKT()
	header := func() map[string]any { return map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": publicJWK(key)} }
	claims := func() map[string]any {
		return map[string]any{"jti": "j-" + rand.Text(), "htm": "POST", "htu": tokenURL, "iat": now.Unix()}
	}
	with := func(m map[string]any, k string, v any) map[string]any {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	good, _ := signer.Proof("POST", tokenURL, "", "")
	for _, tc := range []struct {
		name    string
		headers []string
		check   dpop.Check
		want    error
	}{
		{"a good proof", []string{good}, dpop.Check{Method: "POST", URL: tokenURL}, nil},
		{"htu with a query and default port", []string{craft(header(), with(claims(), "htu", "https://STS.example.com:443/token?x=1#f"), key)},
			dpop.Check{Method: "POST", URL: tokenURL + "?y=2"}, nil},
		{"no header", nil, dpop.Check{Method: "POST", URL: tokenURL}, dpop.ErrInvalidProof},
		{"two headers", []string{good, good}, dpop.Check{Method: "POST", URL: tokenURL}, dpop.ErrInvalidProof},
		{"not a JWT", []string{"a.b"}, dpop.Check{Method: "POST", URL: tokenURL}, dpop.ErrInvalidProof},
		{"wrong htu", []string{craft(header(), with(claims(), "htu", "https://sts.example.com/other"), key)}, dpop.Check{Method: "POST", URL: tokenURL}, dpop.ErrInvalidProof},
		{"htu on another host", []string{craft(header(), with(claims(), "htu", "https://evil.example.com/token"), key)}, dpop.Check{Method: "POST", URL: tokenURL}, dpop.ErrInvalidProof},
		{"wrong htm", []string{craft(header(), with(claims(), "htm", "GET"), key)}, dpop.Check{Method: "POST", URL: tokenURL}, dpop.ErrInvalidProof},
		{"stale iat", []string{craft(header(), with(claims(), "iat", now.Add(-3*time.Minute).Unix()), key)}, dpop.Check{Method: "POST", URL: tokenURL}, dpop.ErrInvalidProof},
		{"future iat", []string{craft(header(), with(claims(), "iat", now.Add(time.Minute).Unix()), key)}, dpop.Check{Method: "POST", URL: tokenURL}, dpop.ErrInvalidProof},
		{"no iat", []string{craft(header(), with(claims(), "iat", nil), key)}, dpop.Check{Method: "POST", URL: tokenURL}, dpop.ErrInvalidProof},
		{"no jti", []string{craft(header(), with(claims(), "jti", nil), key)}, dpop.Check{Method: "POST", URL: tokenURL}, dpop.ErrInvalidProof},
		{"alg none", []string{craft(with(header(), "alg", "none"), claims(), nil)}, dpop.Check{Method: "POST", URL: tokenURL}, dpop.ErrInvalidProof},
		{"HS256", []string{craft(with(header(), "alg", "HS256"), claims(), []byte("secret-secret-secret-secret-1234"))}, dpop.Check{Method: "POST", URL: tokenURL}, dpop.ErrInvalidProof},
		{"a private key in jwk", []string{craft(with(header(), "jwk", privateJWK(key)), claims(), key)}, dpop.Check{Method: "POST", URL: tokenURL}, dpop.ErrInvalidProof},
		{"no jwk", []string{craft(with(header(), "jwk", nil), claims(), key)}, dpop.Check{Method: "POST", URL: tokenURL}, dpop.ErrInvalidProof},
		{"typ JWT", []string{craft(with(header(), "typ", "JWT"), claims(), key)}, dpop.Check{Method: "POST", URL: tokenURL}, dpop.ErrInvalidProof},
		{"signed by another key than the jwk", []string{craft(header(), claims(), other)}, dpop.Check{Method: "POST", URL: tokenURL}, dpop.ErrInvalidProof},
		{"a key other than cnf.jkt", []string{good}, dpop.Check{Method: "POST", URL: tokenURL, JKT: mustSigner(t, other).JKT()}, dpop.ErrInvalidProof},
		{"the key of cnf.jkt", []string{mustProof(t, signer, "GET", "https://mcp.example.com/mcp", "at", "")}, dpop.Check{Method: "GET", URL: "https://mcp.example.com/mcp", AccessToken: "at", JKT: jkt}, nil},
		{"a mismatched ath", []string{mustProof(t, signer, "GET", "https://mcp.example.com/mcp", "another token", "")}, dpop.Check{Method: "GET", URL: "https://mcp.example.com/mcp", AccessToken: "at", JKT: jkt}, dpop.ErrInvalidProof},
		{"no ath where a token is presented", []string{mustProof(t, signer, "GET", "https://mcp.example.com/mcp", "", "")}, dpop.Check{Method: "GET", URL: "https://mcp.example.com/mcp", AccessToken: "at"}, dpop.ErrInvalidProof},
	} {
		v := &dpop.Verifier{Replay: newMemReplay(nil), Clock: func() time.Time { return now }}
		p, err := v.Verify(context.Background(), tc.headers, tc.check)
		switch {
		case tc.want == nil && (err != nil || p.JKT != jkt):
			t.Errorf("%s: %+v, %v", tc.name, p, err)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func mustSigner(t *testing.T, k crypto.Signer) *dpop.Signer {
	t.Helper()
	s, err := dpop.NewSigner(k, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustProof(t *testing.T, s *dpop.Signer, method, url, token, nonce string) string {
	t.Helper()
	p, err := s.Proof(method, url, token, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReplayHeldForTheWindow: a proof's jti is held as long as its iat
// could be accepted (2 minutes back, 30 seconds ahead): a replay 30 s, 60 s
// and 149 s later is refused as a replay, by a cache that forgets a key at
// the time its claim names.
func TestReplayHeldForTheWindow(t *testing.T) {
	clock := now
	key, _ := dpop.GenerateKey()
	// The proof claims an iat 30 s ahead of the verifier, the latest it
	// accepts: held until iat + 2m30s.
	ahead, _ := dpop.NewSigner(key, func() time.Time { return now.Add(30 * time.Second) })
	v := &dpop.Verifier{Replay: newMemReplay(func() time.Time { return clock }), Clock: func() time.Time { return clock }}
	proof, err := ahead.Proof("POST", tokenURL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), []string{proof}, dpop.Check{Method: "POST", URL: tokenURL}); err != nil {
		t.Fatalf("first use: %v", err)
	}
	for _, later := range []time.Duration{30 * time.Second, 60 * time.Second, 149 * time.Second} {
		clock = now.Add(later)
		_, err := v.Verify(context.Background(), []string{proof}, dpop.Check{Method: "POST", URL: tokenURL})
		if !errors.Is(err, dpop.ErrInvalidProof) || !strings.Contains(err.Error(), "used before") {
			t.Fatalf("a replay %s later: %v, want refused as used before", later, err)
		}
	}
}

// TestReplay: a proof is accepted once, also when 20 goroutines present it
// at once.
func TestReplay(t *testing.T) {
	key, _ := dpop.GenerateKey()
	s := mustSigner(t, key)
	v := &dpop.Verifier{Replay: newMemReplay(nil), Clock: func() time.Time { return now }}
	proof := mustProof(t, s, "POST", tokenURL, "", "")
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(context.Background(), []string{proof}, dpop.Check{Method: "POST", URL: tokenURL}); err == nil {
				ok.Add(1)
			} else if !errors.Is(err, dpop.ErrInvalidProof) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("%d of 20 uses accepted, want 1", ok.Load())
	}
}

// TestNonces: with nonces on, a proof needs the current or the previous
// period's; a missing or stale one is ErrUseNonce.
func TestNonces(t *testing.T) {
	clock := now
	nonces := dpop.HMACNonces{Key: []byte("replicas share this key"), Period: 5 * time.Minute, Clock: func() time.Time { return clock }}
	other := dpop.HMACNonces{Key: []byte("another deployment"), Period: 5 * time.Minute, Clock: func() time.Time { return clock }}
	key, _ := dpop.GenerateKey()
	s, _ := dpop.NewSigner(key, func() time.Time { return clock })
	v := &dpop.Verifier{Nonces: nonces, Clock: func() time.Time { return clock }}
	check := dpop.Check{Method: "POST", URL: tokenURL}
	n := nonces.Nonce()
	for _, tc := range []struct {
		name  string
		nonce string
		after time.Duration
		want  error
	}{
		{"no nonce", "", 0, dpop.ErrUseNonce},
		{"the current nonce", n, 0, nil},
		{"the previous period's", n, 5 * time.Minute, nil},
		{"two periods old", n, 10 * time.Minute, dpop.ErrUseNonce},
		{"another deployment's", other.Nonce(), 0, dpop.ErrUseNonce},
		{"made up", "abc", 0, dpop.ErrUseNonce},
	} {
		clock = now.Add(tc.after)
		_, err := v.Verify(context.Background(), []string{mustProof(t, s, "POST", tokenURL, "", tc.nonce)}, check)
		if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// FuzzVerify: whatever a DPoP header holds, Verify refuses it with
// ErrInvalidProof or ErrUseNonce (never a panic), unless it is a proof
// whose signature verifies with its own public jwk.
func FuzzVerify(f *testing.F) {
	key, _ := dpop.GenerateKey()
	s, _ := dpop.NewSigner(key, func() time.Time { return now })
	good, _ := s.Proof("POST", tokenURL, "", "")
	f.Add(good)
	f.Add(craft(map[string]any{"typ": "dpop+jwt", "alg": "none", "jwk": publicJWK(key)}, map[string]any{"jti": "x"}, nil))
	f.Add(craft(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": privateJWK(key)}, map[string]any{"jti": "x", "htm": "POST", "htu": tokenURL, "iat": now.Unix()}, key))
	f.Add("e30.e30.")
	f.Fuzz(func(t *testing.T, proof string) {
		v := &dpop.Verifier{Clock: func() time.Time { return now }}
		p, err := v.Verify(context.Background(), []string{proof}, dpop.Check{Method: "POST", URL: tokenURL})
		switch {
		case err != nil && !errors.Is(err, dpop.ErrInvalidProof) && !errors.Is(err, dpop.ErrUseNonce):
			t.Fatalf("unexpected error kind: %v", err)
		case err == nil && (len(p.JKT) != 43 || p.JTI == ""):
			t.Fatalf("accepted %q as %+v", proof, p)
		}
	})
}

// TestAlgorithmsAndSize: a verifier configured for some algorithms refuses
// a proof of another, valid in every other respect; a proof over
// MaxProofBytes is refused before it is parsed.
func TestAlgorithmsAndSize(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := dpop.NewSigner(rsaKey, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	proof, err := rs.Proof("POST", tokenURL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	check := dpop.Check{Method: "POST", URL: tokenURL}
	all := &dpop.Verifier{Replay: newMemReplay(nil), Clock: func() time.Time { return now }}
	if _, err := all.Verify(context.Background(), []string{proof}, check); err != nil {
		t.Fatalf("an RS256 proof with the default algorithms: %v", err)
	}
	proof, _ = rs.Proof("POST", tokenURL, "", "")
	onlyES := &dpop.Verifier{Replay: newMemReplay(nil), Clock: func() time.Time { return now }, Algorithms: []string{"ES256"}}
	if _, err := onlyES.Verify(context.Background(), []string{proof}, check); !errors.Is(err, dpop.ErrInvalidProof) || !strings.Contains(err.Error(), "allowed algorithm") {
		t.Fatalf("an RS256 proof where ES256 only is configured: %v", err)
	}
	big := strings.Repeat("a", dpop.MaxProofBytes+1)
	if _, err := all.Verify(context.Background(), []string{big}, check); !errors.Is(err, dpop.ErrInvalidProof) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a proof over the bound: %v", err)
	}
}
