package authorize

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"

	"golang.org/x/oauth2"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
)

// Login signs people in for the browser flows. mcpsts keeps no passwords:
// a person proves who they are to their own identity provider.
type Login interface {
	// Start sends the browser to sign in. The sign-in comes back to the
	// callback with state; f carries the flow's nonce and PKCE verifier.
	Start(w http.ResponseWriter, r *http.Request, state string, f Flow)
	// Finish checks what came back to the callback and returns the person.
	Finish(ctx context.Context, r *http.Request, f Flow) (attest.Identity, error)
}

// OIDCLogin signs people in at an upstream OpenID Connect provider, with
// mcpsts as its relying party: authorization code with PKCE (S256) and a
// nonce; the ID token is verified by the provider's attestor (signature,
// issuer, audience, lifetime), then its nonce is compared.
type OIDCLogin struct {
	// OAuth2 is mcpsts's registration at the provider: client ID, its
	// endpoints, the callback URL and the scopes (openid at least).
	// Client secret authentication sets ClientSecret; private_key_jwt
	// leaves it empty and sets Assertion.
	OAuth2 oauth2.Config
	// Assertion returns a fresh client assertion for the provider's token
	// endpoint (private_key_jwt, RFC 7523 §2.2); nil: none.
	Assertion func() (string, error)
	// IDTokens verifies the provider's ID tokens: the user provider's
	// attestor, whose audience is the client ID.
	IDTokens attest.Attestor
	// EvidenceType is the type IDTokens is asked about.
	EvidenceType string
	// HTTPClient carries the token request (nil: http.DefaultClient).
	HTTPClient *http.Client
}

// Start implements Login.
func (l *OIDCLogin) Start(w http.ResponseWriter, r *http.Request, state string, f Flow) {
	u := l.OAuth2.AuthCodeURL(state, oauth2.S256ChallengeOption(f.Verifier), oauth2.SetAuthURLParam("nonce", f.Nonce))
	noCache(w)
	http.Redirect(w, r, u, http.StatusSeeOther)
}

// Errors of a sign-in.
var (
	ErrLoginRefused = errors.New("the identity provider refused the sign-in")
	ErrLoginInvalid = errors.New("the identity provider's answer is not valid")
)

// Finish implements Login.
func (l *OIDCLogin) Finish(ctx context.Context, r *http.Request, f Flow) (attest.Identity, error) {
	if e := r.FormValue("error"); e != "" {
		return attest.Identity{}, fmt.Errorf("%w: %s", ErrLoginRefused, bound(e))
	}
	code := r.FormValue("code")
	if code == "" {
		return attest.Identity{}, fmt.Errorf("%w: no code", ErrLoginInvalid)
	}
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(f.Verifier)}
	if l.Assertion != nil {
		a, err := l.Assertion()
		if err != nil {
			return attest.Identity{}, fmt.Errorf("client assertion: %w", err)
		}
		opts = append(opts, oauth2.SetAuthURLParam("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
			oauth2.SetAuthURLParam("client_assertion", a))
	}
	if l.HTTPClient != nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, l.HTTPClient)
	}
	tok, err := l.OAuth2.Exchange(ctx, code, opts...)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return attest.Identity{}, fmt.Errorf("%w: token endpoint: %s", ErrLoginRefused, bound(re.ErrorCode))
		}
		return attest.Identity{}, fmt.Errorf("%w: token endpoint unreachable", ErrLoginInvalid)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return attest.Identity{}, fmt.Errorf("%w: no id_token", ErrLoginInvalid)
	}
	id, err := l.IDTokens.Attest(ctx, attest.Evidence{Type: l.EvidenceType, Token: []byte(raw)})
	if err != nil {
		return attest.Identity{}, fmt.Errorf("%w: id_token: %v", ErrLoginInvalid, err)
	}
	if n, _ := id.Attributes["nonce"].(string); n == "" || n != f.Nonce {
		return attest.Identity{}, fmt.Errorf("%w: id_token nonce is not the flow's", ErrLoginInvalid)
	}
	if aud := audiences(id.Attributes["aud"]); !slices.Contains(aud, l.OAuth2.ClientID) {
		return attest.Identity{}, fmt.Errorf("%w: id_token is not for this client", ErrLoginInvalid)
	}
	return id, nil
}

func audiences(v any) []string {
	switch a := v.(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, x := range a {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return a
	}
	return nil
}

// DevLogin is the development login of serve --dev: a page that asks for a
// user name and believes it. It exists only under --dev; its page says so.
type DevLogin struct {
	// Provider and Issuer name the people it signs in.
	Provider, Issuer string
	// Base is the issuer's path.
	Base string
}

// devUser is what a development user name may be.
var devUser = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{0,63}$`)

// Start implements Login: to the development login page.
func (d *DevLogin) Start(w http.ResponseWriter, r *http.Request, state string, _ Flow) {
	noCache(w)
	http.Redirect(w, r, d.Base+PathDevLogin+"?state="+state, http.StatusSeeOther)
}

// Finish implements Login: the name the page posted.
func (d *DevLogin) Finish(_ context.Context, r *http.Request, _ Flow) (attest.Identity, error) {
	if r.Method != http.MethodPost {
		return attest.Identity{}, fmt.Errorf("%w: the development login posts its form", ErrLoginInvalid)
	}
	name := r.PostFormValue("user")
	if !devUser.MatchString(name) {
		return attest.Identity{}, fmt.Errorf("%w: a development user name is 1 to 64 of a-z 0-9 . _ @ -", ErrLoginInvalid)
	}
	return attest.Identity{Kind: oidc.UserKind, Provider: d.Provider, Issuer: d.Issuer, Subject: name}, nil
}

// page serves the development login form. The callback it posts to may
// answer with a redirect to the client (a consent that already covers the
// request, a refusal): the page's form-action names the origin of the
// flow's redirect URI too, or the browser stops on the page. An unknown,
// used, expired or other browser's state gets the error page at once.
func (d *DevLogin) page(e *Endpoint, w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	f, ok := e.peek(w, r, state)
	if !ok {
		return
	}
	target := ""
	if f.RedirectURI != "" {
		target = Origin(f.RedirectURI)
	}
	e.render(w, r, http.StatusOK, "devlogin", map[string]any{"State": state, "Action": d.Base + PathCallback}, target)
}
