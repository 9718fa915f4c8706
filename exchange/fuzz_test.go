package exchange_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mcpsts/mcpsts/exchange"
)

// FuzzTokenRequest: whatever a client sends, the token endpoint answers with
// an OAuth error of the 4xx family (or 429), as JSON, never a 5xx, and never
// issues a token to a request the fuzzer made up.
func FuzzTokenRequest(f *testing.F) {
	e := newEnv(f)
	h := exchange.NewHandler(e.cfg)
	for _, s := range []string{
		"grant_type=" + url.QueryEscape(exchange.GrantTokenExchange) + "&subject_token=a.b.c&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&resource=https%3A%2F%2Fpayments.example.com%2Fmcp",
		"grant_type=client_credentials&client_assertion_type=x&client_assertion=y",
		"grant_type=" + url.QueryEscape(exchange.GrantJWTBearer) + "&assertion=e30.e30.e30",
		"grant_type=a&grant_type=b", "%zz", "resource=http%3A%2F%2Fx&resource=https%3A%2F%2Fy", "client_id=x&grant_type=authorization_code&code=c",
	} {
		f.Add(s, "application/x-www-form-urlencoded")
	}
	f.Add("{}", "application/json")
	f.Fuzz(func(t *testing.T, body, contentType string) {
		req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch {
		case rec.Code == http.StatusOK:
			t.Fatalf("a made-up request got a token: %q", body)
		case rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable:
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		case !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") || !strings.Contains(rec.Body.String(), `"error":"`):
			t.Fatalf("not an OAuth error answer: %d %q", rec.Code, rec.Body)
		}
	})
}

// FuzzParseClient: a client document is accepted only with redirect URIs
// that are https, or http on a loopback address, without fragment.
func FuzzParseClient(f *testing.F) {
	for _, s := range []string{`{"client_id":"a","grant_types":["client_credentials"]}`, `{"client_id":"a","grant_types":["authorization_code"],"redirect_uris":["http://127.0.0.1/cb","https://x/#"]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := exchange.ParseClient(b)
		if err != nil {
			return
		}
		for _, u := range c.RedirectURIs {
			p, perr := url.Parse(u)
			if perr != nil || p.Fragment != "" || strings.Contains(u, "#") || p.Scheme != "https" && p.Scheme != "http" {
				t.Fatalf("accepted redirect URI %q", u)
			}
		}
	})
}
