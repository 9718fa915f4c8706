package exchange_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/exchange/authorize"
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

// FuzzAuthorizationRequest: whatever an authorization request holds, the
// answer is the sign-in, an error page, or a redirect to a URI the client
// registered (exactly, or its loopback URI on another port), never a 5xx
// and never a redirect anywhere else.
func FuzzAuthorizationRequest(f *testing.F) {
	e := newFlowEnv(f, nil)
	h := e.srv.Config.Handler
	good := request(challengeOf(pkceVerifier))
	f.Add(good.Encode())
	for _, k := range []string{"redirect_uri", "code_challenge", "resource", "response_type", "client_id"} {
		q := request(challengeOf(pkceVerifier))
		q.Del(k)
		f.Add(q.Encode())
	}
	f.Add("client_id=mail-app&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&response_type=code")
	f.Add("client_id=mail-app&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&redirect_uri=x")
	f.Fuzz(func(t *testing.T, query string) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "https://sts.example/authorize", nil)
		r.URL.RawQuery = query
		h.ServeHTTP(w, r)
		switch loc := w.Header().Get("Location"); {
		case w.Code >= 500:
			t.Fatalf("%d for %q", w.Code, query)
		case w.Code == http.StatusSeeOther && strings.HasPrefix(loc, "/login/dev?state="):
		case w.Code == http.StatusSeeOther:
			u, err := url.Parse(loc)
			if err != nil {
				t.Fatalf("redirected to %q", loc)
			}
			u.RawQuery = ""
			if !authorize.RedirectMatches([]string{appCB, appLoopback}, u.String()) || u.Query().Get("code") != "" {
				t.Fatalf("redirected to %q for %q", loc, query)
			}
		case w.Code != http.StatusBadRequest || loc != "":
			t.Fatalf("%d %q for %q", w.Code, loc, query)
		}
	})
}

// FuzzRegistration: whatever a registration request holds, the answer is
// 201 with a public client (no secret, exact https or loopback redirect
// URIs) or a 4xx error, never a 5xx.
func FuzzRegistration(f *testing.F) {
	reg := &memRegistrar{clients: map[string]exchange.Client{}}
	// No limit in the way: the rates and the cap are TestRegistrationCaps's.
	unlimited := exchange.RateLimit{Rate: 1e6, Burst: 1e6}
	h := exchange.RegistrationHandler(exchange.RegistrationConfig{Clients: reg, PerSource: unlimited, Overall: unlimited, MaxClients: 1 << 30})
	f.Add(`{"client_name": "App", "redirect_uris": ["https://app.example.com/cb"]}`)
	f.Add(`{"redirect_uris": ["http://127.0.0.1/cb"], "grant_types": ["authorization_code", "refresh_token"], "token_endpoint_auth_method": "none"}`)
	f.Add(`{"redirect_uris": ["http://evil.example/cb"]}`)
	f.Add(`{"redirect_uris": []}`)
	f.Fuzz(func(t *testing.T, body string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "https://sts.example/register", strings.NewReader(body)))
		if w.Code >= 500 || (w.Code != http.StatusCreated && w.Code != http.StatusBadRequest) {
			t.Fatalf("%d for %q", w.Code, body)
		}
		if w.Code != http.StatusCreated {
			return
		}
		var got exchange.ClientMetadata
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || strings.Contains(w.Body.String(), "client_secret") || got.TokenEndpointAuthMethod != "none" {
			t.Fatalf("registered %s", w.Body.String())
		}
		for _, u := range got.RedirectURIs {
			p, err := url.Parse(u)
			if err != nil || (p.Scheme != "https" && !(p.Scheme == "http" && (strings.HasPrefix(p.Host, "127.") || strings.HasPrefix(p.Host, "[::1]") || strings.HasPrefix(p.Host, "localhost")))) {
				t.Fatalf("registered redirect URI %q", u)
			}
		}
	})
}
