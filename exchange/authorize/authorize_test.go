package authorize

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestRedirectMatches(t *testing.T) {
	registered := []string{"https://app.example.com/callback", "http://127.0.0.1:8080/cb", "http://[::1]/cb", "http://localhost:3000/oauth/cb", "https://127.0.0.1:8443/tls",
		"http://192.0.2.7:8080/cb"}
	for _, tc := range []struct {
		name, uri string
		want      bool
	}{
		{"exact", "https://app.example.com/callback", true},
		{"extra query", "https://app.example.com/callback?x=1", false},
		{"extra path segment", "https://app.example.com/callback/more", false},
		{"prefix only", "https://app.example.com/call", false},
		{"other subdomain", "https://evil.app.example.com/callback", false},
		{"http instead of https", "http://app.example.com/callback", false},
		{"trailing slash", "https://app.example.com/callback/", false},
		{"case of the host", "https://App.example.com/callback", false},
		{"case of the path", "https://app.example.com/Callback", false},
		{"userinfo", "https://user@app.example.com/callback", false},
		{"fragment", "https://app.example.com/callback#x", false},
		{"explicit default port", "https://app.example.com:443/callback", false},
		{"escaped path", "https://app.example.com/%63allback", false},
		{"loopback, another port (RFC 8252 §7.3)", "http://127.0.0.1:51004/cb", true},
		{"loopback, no port", "http://127.0.0.1/cb", true},
		{"IPv6 loopback, a port", "http://[::1]:61000/cb", true},
		{"localhost, another port", "http://localhost:49152/oauth/cb", true},
		{"loopback, another path", "http://127.0.0.1:51004/other", false},
		{"loopback, extra query", "http://127.0.0.1:51004/cb?x=1", false},
		{"loopback, another loopback name", "http://localhost:8080/cb", false},
		{"loopback, another loopback address", "http://127.0.0.2:8080/cb", false},
		{"loopback over https, another port", "https://127.0.0.1:51004/cb", false},
		// The port may vary for loopback addresses only, not for any
		// http IP literal.
		{"an http IP literal that is not loopback, exact", "http://192.0.2.7:8080/cb", true},
		{"an http IP literal that is not loopback, another port", "http://192.0.2.7:9999/cb", false},
		{"an https loopback URI, exact", "https://127.0.0.1:8443/tls", true},
		{"an https loopback URI, another port (the exception is http's)", "https://127.0.0.1:9443/tls", false},
		{"loopback, userinfo", "http://evil@127.0.0.1:51004/cb", false},
		{"loopback, fragment", "http://127.0.0.1:51004/cb#x", false},
		{"loopback, a port that is not a number", "http://127.0.0.1:x/cb", false},
		{"empty", "", false},
	} {
		if got := RedirectMatches(registered, tc.uri); got != tc.want {
			t.Errorf("%s: RedirectMatches(%q) = %v, want %v", tc.name, tc.uri, got, tc.want)
		}
	}
	if RedirectMatches(nil, "https://app.example.com/callback") {
		t.Error("a client with no registered redirect URI matched")
	}
}

// FuzzRedirectMatches: a match is the registered string itself, or the
// same loopback http URI with another port, checked here independently.
func FuzzRedirectMatches(f *testing.F) {
	for _, s := range []string{"https://app.example.com/callback", "http://127.0.0.1:1/cb", "http://[::1]:2/cb", "http://localhost/cb", "http://127.0.0.1:1/cb?", "http://127.0.0.1:1/c%62"} {
		f.Add("http://127.0.0.1:8080/cb", s)
	}
	f.Fuzz(func(t *testing.T, registered, requested string) {
		if !RedirectMatches([]string{registered}, requested) || registered == requested {
			return
		}
		r, err1 := url.Parse(registered)
		q, err2 := url.Parse(requested)
		if err1 != nil || err2 != nil || r.Scheme != "http" || q.Scheme != "http" || r.Hostname() != q.Hostname() ||
			r.EscapedPath() != q.EscapedPath() || r.RawQuery != q.RawQuery || r.User != nil || q.User != nil || r.Fragment != "" || q.Fragment != "" ||
			r.Hostname() != "localhost" && r.Hostname() != "::1" && !(len(r.Hostname()) > 4 && r.Hostname()[:4] == "127.") {
			t.Fatalf("%q matched %q", requested, registered)
		}
	})
}

func TestPKCE(t *testing.T) {
	// RFC 7636 Appendix B.
	const verifier, challenge = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
	if err := CheckChallenge(challenge, "S256"); err != nil {
		t.Fatal(err)
	}
	if err := VerifyPKCE(challenge, verifier); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, challenge, method string
		want                    error
	}{
		{"plain", verifier, "plain", ErrPKCEMethod},
		{"no method", challenge, "", ErrPKCEMethod},
		{"s256 in lower case", challenge, "s256", ErrPKCEMethod},
		{"challenge too short", challenge[:42], "S256", ErrPKCEChallenge},
		// Well-formed base64url of a digest of another size: only the
		// length check refuses these.
		{"a 16-byte challenge", "AAAAAAAAAAAAAAAAAAAAAA", "S256", ErrPKCEChallenge},
		{"a 48-byte challenge", strings.Repeat("A", 64), "S256", ErrPKCEChallenge},
		{"challenge padded", challenge + "=", "S256", ErrPKCEChallenge},
		{"challenge not base64url", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM", "S256", ErrPKCEChallenge},
	} {
		if err := CheckChallenge(tc.challenge, tc.method); !errors.Is(err, tc.want) {
			t.Errorf("%s: CheckChallenge = %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, tc := range []struct {
		name, challenge, verifier string
		want                      error
	}{
		{"wrong verifier", challenge, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK", ErrPKCEMismatch},
		{"the challenge as verifier (plain)", challenge, challenge, ErrPKCEMismatch},
		{"verifier without a challenge (downgrade)", "", verifier, ErrPKCEMismatch},
		{"challenge without a verifier", challenge, "", ErrPKCEVerifier},
		{"neither", "", "", ErrPKCEVerifier},
		{"verifier too short", challenge, verifier[:42], ErrPKCEVerifier},
		{"verifier too long", challenge, verifier + verifier + verifier + verifier, ErrPKCEVerifier},
		{"verifier with a space", challenge, verifier[:42] + " ", ErrPKCEVerifier},
	} {
		if err := VerifyPKCE(tc.challenge, tc.verifier); !errors.Is(err, tc.want) {
			t.Errorf("%s: VerifyPKCE = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestRandom(t *testing.T) {
	a, b := Random(StateBytes), Random(StateBytes)
	if len(a) != 43 || a == b {
		t.Fatalf("Random = %q, %q", a, b)
	}
}

// TestDescribe: a scope's description in the page's language, the
// default one where that language has none.
func TestDescribe(t *testing.T) {
	e := &Endpoint{cfg: Config{
		ScopeDescriptions:           map[string]string{"files:read": "Read files", "files:write": "Write files"},
		ScopeDescriptionsByLanguage: map[string]map[string]string{"fr": {"files:read": "Lire les fichiers"}},
	}}
	for _, tc := range []struct{ lang, scope, want string }{
		{"fr", "files:read", "Lire les fichiers"},
		{"fr", "files:write", "Write files"},
		{"en", "files:read", "Read files"},
		{"en", "files:admin", ""},
	} {
		if got := e.describe(tc.lang, tc.scope); got != tc.want {
			t.Errorf("describe(%s, %s) = %q, want %q", tc.lang, tc.scope, got, tc.want)
		}
	}
}

// TestRedirectHostAndOrigin: a redirect URI's host is a DNS name or an IP
// literal without a zone; the CSP source of its origin is built from its
// checked parts, or is empty.
func TestRedirectHostAndOrigin(t *testing.T) {
	for host, want := range map[string]bool{
		"app.example.com": true, "localhost": true, "127.0.0.1": true, "::1": true, "xn--bcher-kva.example": true,
		"fe80::1%eth0": false, "fe80::1%;frame-ancestors https:;": false, "app example.com": false, "a;b": false,
		"-app.example.com": false, "app_example.com": false, "": false, "'self'": false,
	} {
		if got := RedirectHost(host); got != want {
			t.Errorf("RedirectHost(%q) = %v, want %v", host, got, want)
		}
	}
	for u, want := range map[string]string{
		"https://app.example.com/cb":                        "https://app.example.com",
		"http://127.0.0.1:8765/cb":                          "http://127.0.0.1:8765",
		"https://[::1]:9443/cb":                             "https://[::1]:9443",
		"https://[fe80::1%25;frame-ancestors%20https:;]/cb": "",
		"https://[fe80::1%25eth0]/cb":                       "",
		"javascript://app.example.com/cb":                   "",
		"":                                                  "",
	} {
		if got := Origin(u); got != want {
			t.Errorf("Origin(%q) = %q, want %q", u, got, want)
		}
	}
}
