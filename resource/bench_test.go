package resource_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/resource"
)

// BenchmarkMiddlewareOverVerify measures, alternately in one run, a
// request through the middleware with the broker's keys cached (token
// checks, a tools/call body read for its tool's scopes, the caller put in
// the context) and a bare ES256 verification of the same token's
// signature, and reports their ratio (the budget is 1.2): "first-use" with
// the verified-token cache off, so every request verifies the signature,
// and "repeated" with the cache on, the common case of a client that sends
// its token with every request for its lifetime.
func BenchmarkMiddlewareOverVerify(b *testing.B) {
	read := toolCall("read_file")
	// A body that names a tool the caller may not call is read as
	// JSON-RPC in full to find out whether it calls it.
	naming := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"write_file"}}}`
	for _, bc := range []struct {
		name      string
		cacheSize int
		body      string
	}{{"first-use", -1, read}, {"repeated", 0, read}, {"first-use-body-read", -1, naming}} {
		b.Run(bc.name, func(b *testing.B) { benchMiddleware(b, bc.cacheSize, bc.body) })
	}
}

func benchMiddleware(b *testing.B, cacheSize int, body string) {
	f := newFixture(b, func(c *resource.Config) { c.CacheSize = cacheSize })
	tok := f.token(nil, nil)
	againstVerify(b, f, tok, func() *http.Request { return benchRequest(tok, body) })
}

// againstVerify measures requests made by request through the middleware
// of f, alternately with a bare ES256 verification of tok's signature, and
// reports both and their ratio.
func againstVerify(b *testing.B, f *fixture, tok string, request func() *http.Request) {
	h := f.rs.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), "mcp:connect")
	warm := httptest.NewRecorder()
	h.ServeHTTP(warm, request())
	if warm.Code != 200 {
		b.Fatalf("warm-up: %d %s", warm.Code, warm.Body)
	}
	dot := strings.LastIndex(tok, ".")
	input := tok[:dot]
	sig, _ := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	var set jose.JSONWebKeySet
	json.Unmarshal(f.broker.JWKS(), &set)
	pub := set.Key(f.broker.KeyID())[0].Key // as the middleware has it

	var mw, bare time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r, w := request(), httptest.NewRecorder()
		t0 := time.Now()
		h.ServeHTTP(w, r)
		t1 := time.Now()
		if err := jwt.SigningMethodES256.Verify(input, sig, pub); err != nil {
			b.Fatal(err)
		}
		mw += t1.Sub(t0)
		bare += time.Since(t1)
		if w.Code != 200 {
			b.Fatal(w.Code, w.Body.String())
		}
	}
	b.ReportMetric(float64(mw.Nanoseconds())/float64(b.N), "middleware-ns/op")
	b.ReportMetric(float64(bare.Nanoseconds())/float64(b.N), "verify-ns/op")
	b.ReportMetric(float64(mw)/float64(bare), "middleware/verify")
}

func benchRequest(tok, body string) *http.Request {
	r := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "https://mcp.example.com/mcp", strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+tok)
	r.Header.Set("Content-Type", "application/json")
	return r
}

// BenchmarkDPoPMiddlewareOverVerify measures a request with a DPoP-bound
// token through the middleware (the token's signature, the proof's, its
// jti claimed in the in-memory cache) against a bare ES256 verification of
// the token, alternately, and reports the ratio (the budget is 2.2: two
// verifications). "first-use" verifies the token every time; "repeated"
// takes it from the verified-token cache, as a client that sends its token
// with every request; the proof is new each time. Proofs are made outside
// the timed part.
func BenchmarkDPoPMiddlewareOverVerify(b *testing.B) {
	for _, bc := range []struct {
		name      string
		cacheSize int
	}{{"first-use", -1}, {"repeated", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixture(b, func(c *resource.Config) { c.CacheSize, c.DPoP = bc.cacheSize, &resource.DPoP{} })
			key, _ := dpop.GenerateKey()
			s, _ := dpop.NewSigner(key, nil)
			tok := f.token(map[string]any{"cnf": map[string]any{"jkt": s.JKT()}}, nil)
			body := toolCall("read_file")
			againstVerify(b, f, tok, func() *http.Request {
				r := benchRequest(tok, body)
				r.Header.Set("Authorization", "DPoP "+tok)
				p, _ := s.Proof(http.MethodPost, "https://mcp.example.com/mcp", tok, "")
				r.Header.Set("DPoP", p)
				return r
			})
		})
	}
}
