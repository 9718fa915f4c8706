package federationtest

import (
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Login makes the issuer an OpenID Connect provider people sign in at, for
// one relying party: a login page that asks for a user name (the person's
// sub), and a token endpoint that redeems its codes, once, with the
// client's secret and the PKCE verifier, for an ID token with the nonce.
type Login struct {
	ClientID, ClientSecret string
	// ClientKey, when set, authenticates the client by private_key_jwt
	// (RFC 7523 §2.2) instead of the secret.
	ClientKey crypto.PublicKey
	// Refuse makes the login page send people back with error=access_denied.
	Refuse bool
}

type login struct {
	Login
	mu    sync.Mutex
	codes map[string]grantedCode
}

type grantedCode struct {
	sub, nonce, challenge, redirect string
	used                            bool
}

// EnableLogin turns the login on.
func (is *Issuer) EnableLogin(l Login) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.login = &login{Login: l, codes: map[string]grantedCode{}}
}

// loginEnabled returns the login, if on.
func (is *Issuer) loginEnabled() *login {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.login
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Corp sign-in</title></head>
<body><h1>Corp identity provider</h1>
<form method="post" action="{{.Action}}">
<label for="username">Corporate user name</label> <input id="username" name="username" autocomplete="username">
<button id="signin" type="submit">Sign in</button>
</form></body></html>`))

func (l *login) serve(is *Issuer, w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/login/authorize":
		q := r.URL.Query()
		if q.Get("client_id") != l.ClientID || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" ||
			q.Get("code_challenge") == "" || q.Get("nonce") == "" || len(q.Get("state")) < 22 || q.Get("redirect_uri") == "" {
			http.Error(w, "bad authorization request", http.StatusBadRequest)
			return
		}
		if r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			loginPage.Execute(w, map[string]any{"Action": template.URL("/login/authorize?" + r.URL.RawQuery)})
			return
		}
		back, _ := url.Parse(q.Get("redirect_uri"))
		v := url.Values{"state": {q.Get("state")}}
		if sub := r.PostFormValue("username"); l.Refuse || sub == "" {
			v.Set("error", "access_denied")
		} else {
			code := base64.RawURLEncoding.EncodeToString([]byte(sub + time.Now().String()))
			l.mu.Lock()
			l.codes[code] = grantedCode{sub: sub, nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
			l.mu.Unlock()
			v.Set("code", code)
		}
		back.RawQuery = v.Encode()
		http.Redirect(w, r, back.String(), http.StatusSeeOther)
	case "/login/token":
		if !l.authenticated(is, r) {
			tokenError(w, http.StatusUnauthorized, "invalid_client")
			return
		}
		if r.PostFormValue("grant_type") == "urn:ietf:params:oauth:grant-type:token-exchange" {
			l.issueIDJAG(is, w, r)
			return
		}
		l.mu.Lock()
		c, found := l.codes[r.PostFormValue("code")]
		if found {
			l.codes[r.PostFormValue("code")] = grantedCode{used: true}
		}
		l.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
		if !found || c.used || c.redirect != r.PostFormValue("redirect_uri") || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
			tokenError(w, http.StatusBadRequest, "invalid_grant")
			return
		}
		now := time.Now()
		idToken := is.Sign(map[string]any{"iss": is.URL, "sub": c.sub, "aud": l.ClientID, "nonce": c.nonce, "email": c.sub + "@corp.example",
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}, nil)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "opaque-" + c.sub, "token_type": "Bearer", "expires_in": 300, "id_token": idToken})
	default:
		http.NotFound(w, r)
	}
}

// issueIDJAG is the identity provider's side of enterprise-managed
// authorization (SEP-990): the client's own ID token (issued here to it)
// becomes an ID-JAG for the authorization server and resource it names.
// This provider's policy lets every user through; the receiving server's
// trust maps decide.
func (l *login) issueIDJAG(is *Issuer, w http.ResponseWriter, r *http.Request) {
	if r.PostFormValue("requested_token_type") != "urn:ietf:params:oauth:token-type:id-jag" ||
		r.PostFormValue("subject_token_type") != "urn:ietf:params:oauth:token-type:id_token" ||
		r.PostFormValue("audience") == "" || r.PostFormValue("resource") == "" {
		tokenError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(r.PostFormValue("subject_token"), claims, func(*jwt.Token) (any, error) { return is.PublicKey(), nil },
		jwt.WithValidMethods([]string{"ES256", "RS256"}), jwt.WithAudience(l.ClientID), jwt.WithIssuer(is.URL), jwt.WithExpirationRequired())
	if err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_grant")
		return
	}
	now := time.Now()
	jag := is.Sign(map[string]any{"iss": is.URL, "sub": claims["sub"], "aud": r.PostFormValue("audience"), "resource": r.PostFormValue("resource"),
		"client_id": l.ClientID, "scope": r.PostFormValue("scope"), "jti": base64.RawURLEncoding.EncodeToString([]byte(now.String())),
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}, map[string]any{"typ": "oauth-id-jag+jwt"})
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": jag, "issued_token_type": "urn:ietf:params:oauth:token-type:id-jag",
		"token_type": "N_A", "expires_in": 300})
}

// authenticated checks the client: its secret, or its assertion signed
// with ClientKey, for this token endpoint, fresh.
func (l *login) authenticated(is *Issuer, r *http.Request) bool {
	if l.ClientKey == nil {
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
		}
		return id == l.ClientID && subtle.ConstantTimeCompare([]byte(secret), []byte(l.ClientSecret)) == 1
	}
	if r.PostFormValue("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		return false
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(r.PostFormValue("client_assertion"), claims, func(*jwt.Token) (any, error) { return l.ClientKey, nil },
		jwt.WithValidMethods([]string{"ES256", "RS256"}), jwt.WithAudience(is.URL+"/login/token"), jwt.WithIssuer(l.ClientID),
		jwt.WithSubject(l.ClientID), jwt.WithExpirationRequired())
	return err == nil
}

func tokenError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code})
}
