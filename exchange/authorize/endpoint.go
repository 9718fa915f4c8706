package authorize

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/internal/auditvalue"
	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/consent"
)

// Client is what the browser flows know of a client.
type Client struct {
	ID           string
	Name         string
	RedirectURIs []string
	// Document reports a client described by a client ID metadata
	// document (its ID is the document's URL) rather than registered.
	Document bool
	// Unvetted reports a client no administrator registered (Dynamic
	// Client Registration, a metadata document): its redirect URIs are
	// its own word. Errors before sign-in go to the error page, never to
	// them (RFC 9700 §4.11.2), and the consent screen warns.
	Unvetted bool
}

// ErrUnknownClient: no client has this ID.
var ErrUnknownClient = errors.New("authorize: unknown client")

// Clients finds the client of an authorization request: registered, or
// described by its metadata document.
type Clients interface {
	BrowserClient(ctx context.Context, id string) (Client, error)
}

// Decider decides what a person's grant to a client holds; the trust maps.
type Decider interface {
	Decide(ctx context.Context, id attest.Identity, r trustmaps.Request) (trustmaps.Decision, error)
}

// DecisionLog records the flows' decisions (the audit log).
type DecisionLog interface {
	Decision(name string, at time.Time, sc trace.SpanContext, attrs []attribute.KeyValue) error
}

// Config wires the browser flows.
type Config struct {
	// Issuer is this authorization server's issuer: the iss of every
	// authorization response (RFC 9207), and, with Base, where the pages
	// live (Base is the issuer's path, "" at the root).
	Issuer, Base string
	Clients      Clients
	Decider      Decider
	Consents     consent.Store
	Codes        Store
	Flows        FlowStore
	// Login signs people in: an upstream OIDC provider, or the
	// development login.
	Login Login
	// Refresh offers refresh tokens (the offline_access scope).
	Refresh bool
	// RefreshTTL is a refresh token's life, shown on the consent screen.
	RefreshTTL time.Duration
	// ScopeDescriptions describe scopes to people on the consent screen.
	ScopeDescriptions map[string]string
	// ScopeDescriptionsByLanguage are the same in other languages of the
	// pages, by language; ScopeDescriptions serve where one lacks.
	ScopeDescriptionsByLanguage map[string]map[string]string
	// Remember picks the attributes of a person that a grant keeps for
	// the decisions its redemption and refreshes make again (those the
	// trust maps read); nil keeps none.
	Remember func(attributes map[string]any) map[string]any
	Audit    DecisionLog // nil: none
	Log      *slog.Logger
	Clock    func() time.Time
}

// Lifetimes of the flows' secrets.
const (
	// CodeTTL is an authorization code's life (at most 60 s).
	CodeTTL = time.Minute
	// FlowTTL is how long a person has to sign in and decide.
	FlowTTL = 10 * time.Minute
)

// CookieName binds a flow to the browser that started it. The __Host-
// prefix makes the browser keep it only when Secure, for this host, for
// every path.
const CookieName = "__Host-mcpsts-flow"

// GrantAuthorizationCode is the grant type the trust maps are asked about.
const GrantAuthorizationCode = "authorization_code"

// ScopeOfflineAccess asks for a refresh token.
const ScopeOfflineAccess = "offline_access"

// Endpoint is the authorization endpoint, the login callback, the consent
// screen and the consents page.
type Endpoint struct {
	cfg   Config
	mux   *http.ServeMux
	pages *pages
}

// Paths of the browser flows under the issuer's path.
const (
	PathAuthorize = "/authorize"
	PathCallback  = "/login/callback"
	PathDevLogin  = "/login/dev"
	PathConsent   = "/consent"
	PathConsents  = "/consents"
	PathAssets    = "/assets/"
)

// New returns the browser flows' handler.
func New(cfg Config) (*Endpoint, error) {
	switch {
	case cfg.Issuer == "" || cfg.Clients == nil || cfg.Decider == nil || cfg.Consents == nil || cfg.Codes == nil || cfg.Flows == nil || cfg.Login == nil:
		return nil, errors.New("authorize: the issuer, clients, decider, consents, codes, flows and login are all required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.RefreshTTL == 0 {
		cfg.RefreshTTL = 24 * time.Hour // the token endpoint's default
	}
	p, err := newPages()
	if err != nil {
		return nil, err
	}
	e := &Endpoint{cfg: cfg, mux: http.NewServeMux(), pages: p}
	b := cfg.Base
	e.mux.HandleFunc(b+PathAuthorize, e.authorize)
	e.mux.HandleFunc(b+PathCallback, e.callback)
	e.mux.HandleFunc("POST "+b+PathConsent, e.decide)
	e.mux.HandleFunc("GET "+b+PathConsent, func(w http.ResponseWriter, r *http.Request) {
		if f, csrf, ok := e.page(w, r, PurposeAuthorize); ok {
			e.consentPage(w, r, f, csrf)
		}
	})
	e.mux.HandleFunc(b+PathConsents, e.consents)
	e.mux.Handle("GET "+b+PathAssets, http.StripPrefix(b+PathAssets, assets()))
	if d, ok := cfg.Login.(*DevLogin); ok {
		e.mux.HandleFunc("GET "+b+PathDevLogin, func(w http.ResponseWriter, r *http.Request) { d.page(e, w, r) })
	}
	return e, nil
}

// Patterns are the paths to mount the endpoint at.
func (e *Endpoint) Patterns() []string {
	b := e.cfg.Base
	p := []string{b + PathAuthorize, b + PathCallback, b + PathConsent, b + PathConsents, b + PathAssets}
	if _, ok := e.cfg.Login.(*DevLogin); ok {
		p = append(p, b+PathDevLogin)
	}
	return p
}

func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) { e.mux.ServeHTTP(w, r) }

// authzError is an error of an authorization request that is redirected
// to the client (RFC 6749 §4.1.2.1): the client and its redirect URI are
// known good.
type authzError struct{ code, description string }

// authorize is the authorization endpoint (OAuth 2.1 §4.1.1): GET or POST.
// An unknown client or a redirect URI not registered gets an error page;
// every other error goes back to the client, with state and iss.
func (e *Endpoint) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		e.errorPage(w, r, http.StatusMethodNotAllowed, "method", "authorize.deny", attribute.String(attrReason, "method"))
		return
	}
	q, dup, ok := params(r)
	if !ok {
		e.errorPage(w, r, http.StatusBadRequest, "bad_request", "authorize.deny", attribute.String(attrReason, "the body is not a form of at most 64 KiB"))
		return
	}
	clientID, redirect := q.Get("client_id"), q.Get("redirect_uri")
	if clientID == "" || dup["client_id"] {
		e.errorPage(w, r, http.StatusBadRequest, "no_client", "authorize.deny", attribute.String(attrReason, "client_id missing"))
		return
	}
	client, err := e.cfg.Clients.BrowserClient(ctx, clientID)
	switch {
	case errors.Is(err, ErrUnknownClient):
		e.errorPage(w, r, http.StatusBadRequest, "unknown_client", "authorize.deny",
			attribute.String(attrClientID, bound(clientID)), attribute.String(attrReason, bound(err.Error())))
		return
	case err != nil:
		e.cfg.Log.Error("browser flow: client lookup", "client_id", bound(clientID), "error", err)
		e.errorPage(w, r, http.StatusServiceUnavailable, "unavailable", "authorize.deny",
			attribute.String(attrClientID, bound(clientID)), attribute.String(attrReason, "client lookup failed"))
		return
	}
	if redirect == "" || dup["redirect_uri"] || !RedirectMatches(client.RedirectURIs, redirect) {
		e.errorPage(w, r, http.StatusBadRequest, "bad_redirect", "authorize.deny",
			attribute.String(attrClientID, bound(clientID)), attribute.String(attrRedirect, bound(redirect)), attribute.String(attrReason, "redirect_uri not registered"))
		return
	}
	f := Flow{Purpose: PurposeAuthorize, ClientID: clientID, RedirectURI: redirect, State: q.Get("state")}
	if aerr := e.checkRequest(q, dup, &f); aerr != nil {
		attrs := []attribute.KeyValue{attribute.String(attrClientID, bound(clientID)), attribute.String(attrError, aerr.code), attribute.String(attrReason, aerr.description)}
		if client.Unvetted {
			// Not an open redirector for whoever registered a redirect URI.
			e.errorPage(w, r, http.StatusBadRequest, "invalid_request", "authorize.deny", attrs...)
			return
		}
		e.audit(ctx, "authorize.deny", attrs...)
		e.redirect(w, r, f, url.Values{"error": {aerr.code}, "error_description": {aerr.description}})
		return
	}
	e.startLogin(w, r, f)
}

// params are the request's parameters (the query of a GET, the form of a
// POST), and which of them were repeated: none may be (RFC 6749 §3.1);
// ok is false for a POST whose body is no form of at most 64 KiB.
func params(r *http.Request) (url.Values, map[string]bool, bool) {
	q := r.URL.Query()
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			return nil, nil, false
		}
		q = r.PostForm
	}
	dup := map[string]bool{}
	for k, v := range q {
		if len(v) > 1 {
			dup[k] = true
		}
	}
	return q, dup, true
}

// checkRequest checks what remains of an authorization request once its
// client and redirect URI are known, and records it in f.
func (e *Endpoint) checkRequest(q url.Values, dup map[string]bool, f *Flow) *authzError {
	for k := range dup {
		return &authzError{"invalid_request", k + " is repeated"}
	}
	if len(f.State) > maxState {
		f.State = ""
		return &authzError{"invalid_request", "state is longer than 1024 bytes"}
	}
	if rt := q.Get("response_type"); rt != "code" {
		return &authzError{"unsupported_response_type", "response_type must be code"}
	}
	if err := CheckChallenge(q.Get("code_challenge"), q.Get("code_challenge_method")); err != nil {
		return &authzError{"invalid_request", err.Error()}
	}
	f.Challenge = q.Get("code_challenge")
	if jkt := q.Get("dpop_jkt"); jkt != "" { // RFC 9449 §10: the code is redeemed with a proof of this key only
		if b, err := base64.RawURLEncoding.Strict().DecodeString(jkt); err != nil || len(b) != sha256.Size {
			return &authzError{"invalid_request", "dpop_jkt must be the base64url SHA-256 thumbprint of a key"}
		}
		f.JKT = jkt
	}
	resource := q.Get("resource")
	if resource == "" {
		return &authzError{"invalid_target", "resource is required: the MCP server the tokens are for (RFC 8707)"}
	}
	canon, err := trustmaps.CanonicalResource(resource)
	if err != nil {
		return &authzError{"invalid_target", "resource is not a canonical https URI"}
	}
	f.Resource = canon
	if len(strings.Fields(q.Get("scope"))) > maxScopes {
		return &authzError{"invalid_scope", "at most 50 scopes"}
	}
	for _, s := range strings.Fields(q.Get("scope")) {
		switch {
		case s == ScopeOfflineAccess:
			f.Offline = e.cfg.Refresh // not offered: ignored, as OIDC does
		case !slices.Contains(f.Scopes, s):
			f.Scopes = append(f.Scopes, s)
		}
	}
	return nil
}

// Bounds of what a request may make the flow keep and decide.
const (
	maxState  = 1024
	maxScopes = 50
)

// startLogin binds f to this browser with a new cookie, saves it and
// sends the browser to sign in.
func (e *Endpoint) startLogin(w http.ResponseWriter, r *http.Request, f Flow) {
	cookie := Random(StateBytes)
	f.Browser = Hash(cookie)
	f.Nonce, f.Verifier = Random(StateBytes), Random(StateBytes)
	f.ExpiresAt = e.cfg.Clock().Add(FlowTTL)
	state := Random(StateBytes)
	if err := e.cfg.Flows.SaveFlow(r.Context(), Hash(state), f); err != nil {
		e.unavailable(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: cookie, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, MaxAge: int(FlowTTL / time.Second)})
	e.cfg.Login.Start(w, r, state, f)
}

// take claims the flow of a single-use key sent back by the browser
// (state or CSRF token), and checks that the same browser sends it. A
// missing, used, unknown, expired or foreign key is refused and audited as
// a possible cross-site request forgery.
func (e *Endpoint) take(w http.ResponseWriter, r *http.Request, key string) (Flow, bool) {
	return e.flow(w, r, key, e.cfg.Flows.TakeFlow)
}

// peek is take without the claim: the flow stays for the form that sends
// its key back.
func (e *Endpoint) peek(w http.ResponseWriter, r *http.Request, key string) (Flow, bool) {
	return e.flow(w, r, key, e.cfg.Flows.PeekFlow)
}

func (e *Endpoint) flow(w http.ResponseWriter, r *http.Request, key string, get func(context.Context, string) (Flow, error)) (Flow, bool) {
	ctx := r.Context()
	var f Flow
	var err error
	reason := ""
	if key == "" {
		reason = "missing"
	} else if f, err = get(ctx, Hash(key)); errors.Is(err, ErrReused) {
		reason = "used before"
	} else if errors.Is(err, ErrNotFound) {
		reason = "unknown"
	} else if err != nil {
		e.unavailable(w, r, err)
		return Flow{}, false
	} else if c, cerr := r.Cookie(CookieName); cerr != nil || Hash(c.Value) != f.Browser {
		reason = "another browser's"
	} else if !e.cfg.Clock().Before(f.ExpiresAt) {
		reason = "expired"
	}
	if reason != "" {
		e.errorPage(w, r, http.StatusBadRequest, "bad_state", "login.csrf", attribute.String(attrReason, "state "+reason),
			attribute.String(attrClientID, bound(f.ClientID)))
		return Flow{}, false
	}
	return f, true
}

// callback is where the person comes back from signing in: GET from an
// identity provider, POST from the development login.
func (e *Endpoint) callback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		e.errorPage(w, r, http.StatusMethodNotAllowed, "method", "login.deny", attribute.String(attrReason, "method"))
		return
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	}
	f, ok := e.take(w, r, r.FormValue("state"))
	if !ok {
		return
	}
	ctx := r.Context()
	id, err := e.cfg.Login.Finish(ctx, r, f)
	if err != nil {
		e.cfg.Log.Info("browser flow: sign-in refused", "error", err)
		e.audit(ctx, "login.deny", attribute.String(attrClientID, bound(f.ClientID)), attribute.String(attrReason, bound(err.Error())))
		if f.Purpose == PurposeAuthorize {
			e.redirect(w, r, f, url.Values{"error": {"access_denied"}, "error_description": {"the sign-in did not succeed"}})
			return
		}
		e.errorPage(w, r, http.StatusForbidden, "login_failed", "")
		return
	}
	f.Provider, f.Subject = id.Provider, id.Subject
	f.Person = Person{Issuer: id.Issuer}
	if e.cfg.Remember != nil {
		f.Person.Attributes = e.cfg.Remember(id.Attributes)
	}
	e.audit(ctx, "login.allow", attribute.String(attrProvider, id.Provider), attribute.String(attrSubject, bound(id.Subject)),
		attribute.String(attrClientID, bound(f.ClientID)))
	if f.Purpose == PurposeConsents {
		e.showAt(w, r, f, PathConsents, nil)
		return
	}
	d, err := e.grant(ctx, r, id, f)
	if err != nil {
		code := "access_denied"
		switch {
		case errors.Is(err, trustmaps.ErrInvalidScope):
			code = "invalid_scope"
		case errors.Is(err, trustmaps.ErrInvalidTarget):
			code = "invalid_target"
		}
		e.audit(ctx, "authorize.deny", attribute.String(attrProvider, id.Provider), attribute.String(attrSubject, bound(id.Subject)),
			attribute.String(attrClientID, bound(f.ClientID)), attribute.String(attrError, code), attribute.String(attrReason, bound(err.Error())))
		e.redirect(w, r, f, url.Values{"error": {code}, "error_description": {"the trust maps do not grant this request"}})
		return
	}
	f.Granted, f.TTL, f.Resource = d.Scopes, d.TTL, d.Audience
	switch err := consent.Check(ctx, e.cfg.Consents, f.Provider, f.Subject, f.ClientID, f.consented(), f.Resource, e.cfg.Clock()); {
	case err == nil:
		e.issueCode(w, r, f, "existing")
	case errors.Is(err, consent.ErrNoConsent):
		e.askConsent(w, r, f)
	default:
		e.unavailable(w, r, err)
	}
}

// grant asks the trust maps what the person's grant to the client holds.
// A request for scopes some of which the maps do not grant is narrowed to
// those they do (RFC 6749 §3.3: MCP clients ask for every scope a server
// advertises); the consent screen shows what is left, and the token
// response says it. None granted is invalid_scope.
func (e *Endpoint) grant(ctx context.Context, r *http.Request, id attest.Identity, f Flow) (trustmaps.Decision, error) {
	return Narrow(f.Scopes, func(scopes []string) (trustmaps.Decision, error) {
		return e.cfg.Decider.Decide(ctx, id, trustmaps.Request{
			Audience: f.Resource, Scopes: scopes, GrantType: GrantAuthorizationCode, ClientID: f.ClientID,
			SourceIP: sourceIP(r), Time: e.cfg.Clock(),
		})
	})
}

// Narrow asks the trust maps (ask) for scopes, and when some of them are
// not granted, for those that are: the browser flow and every decision
// its grant makes again (code redemption, refresh) narrow the same way.
// None granted is the first answer's invalid_scope.
func Narrow(scopes []string, ask func(scopes []string) (trustmaps.Decision, error)) (trustmaps.Decision, error) {
	d, err := ask(scopes)
	if !errors.Is(err, trustmaps.ErrInvalidScope) || len(scopes) < 2 {
		return d, err
	}
	var granted []string
	for _, s := range scopes {
		if _, err := ask([]string{s}); err == nil {
			granted = append(granted, s)
		}
	}
	if len(granted) == 0 {
		return d, err
	}
	return ask(granted)
}

// consented are the scopes a consent must cover: those granted, and
// offline_access when a refresh token was asked for.
func (f Flow) consented() []string {
	s := slices.Clone(f.Granted)
	if f.Offline {
		s = append(s, ScopeOfflineAccess)
	}
	return s
}

// Durations a person may give a consent for.
var consentDurations = []time.Duration{time.Hour, 24 * time.Hour, 30 * 24 * time.Hour, 90 * 24 * time.Hour}

// decide is the consent form's answer.
func (e *Endpoint) decide(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	f, ok := e.take(w, r, r.PostFormValue("csrf"))
	if !ok {
		return
	}
	ctx := r.Context()
	if f.Purpose != PurposeAuthorize || f.Subject == "" {
		e.errorPage(w, r, http.StatusBadRequest, "bad_state", "login.csrf", attribute.String(attrReason, "consent form token of another step"))
		return
	}
	who := []attribute.KeyValue{attribute.String(attrProvider, f.Provider), attribute.String(attrSubject, bound(f.Subject)),
		attribute.String(attrClientID, bound(f.ClientID)), attribute.String(attrAudience, f.Resource), attribute.String(attrScopes, strings.Join(f.consented(), " "))}
	if r.PostFormValue("decision") != "approve" {
		e.audit(ctx, "consent.deny", who...)
		e.redirect(w, r, f, url.Values{"error": {"access_denied"}, "error_description": {"the user denied the request"}})
		return
	}
	life, err := time.ParseDuration(r.PostFormValue("duration"))
	if err != nil || !slices.Contains(consentDurations, life) {
		life = 30 * 24 * time.Hour
	}
	c, err := e.cfg.Consents.GrantConsent(ctx, consent.Consent{User: f.Subject, Provider: f.Provider, ClientID: f.ClientID,
		Scopes: f.consented(), Resources: []string{f.Resource}, ExpiresAt: e.cfg.Clock().Add(life)})
	if err != nil {
		e.unavailable(w, r, err)
		return
	}
	e.audit(ctx, "consent.grant", append(who, attribute.String(attrConsent, c.ID), attribute.String(attrDuration, life.String()))...)
	e.issueCode(w, r, f, c.ID)
}

// issueCode ends a flow: a code bound to the client, redirect URI, PKCE
// challenge and resource goes back to the client.
func (e *Endpoint) issueCode(w http.ResponseWriter, r *http.Request, f Flow, consentID string) {
	code := Random(32)
	err := e.cfg.Codes.SaveCode(r.Context(), Code{Hash: Hash(code), ClientID: f.ClientID, RedirectURI: f.RedirectURI, Challenge: f.Challenge,
		Resource: f.Resource, Scopes: f.consented(), Provider: f.Provider, Subject: f.Subject, TTL: f.TTL, Family: Random(16), JKT: f.JKT,
		ExpiresAt: e.cfg.Clock().Add(CodeTTL), Person: f.Person})
	if err != nil {
		e.unavailable(w, r, err)
		return
	}
	e.audit(r.Context(), "authorize.code", attribute.String(attrProvider, f.Provider), attribute.String(attrSubject, bound(f.Subject)),
		attribute.String(attrClientID, bound(f.ClientID)), attribute.String(attrAudience, f.Resource),
		attribute.String(attrScopes, strings.Join(f.consented(), " ")), attribute.String(attrConsent, consentID))
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: -1})
	e.redirect(w, r, f, url.Values{"code": {code}})
}

// redirect sends the browser back to the client's redirect URI (already
// matched) with params, the client's state and our issuer (RFC 9207).
func (e *Endpoint) redirect(w http.ResponseWriter, r *http.Request, f Flow, params url.Values) {
	u, err := url.Parse(f.RedirectURI)
	if err != nil { // matched a registered URI: cannot happen
		e.errorPage(w, r, http.StatusBadRequest, "bad_redirect", "")
		return
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if f.State != "" {
		q.Set("state", f.State)
	}
	q.Set("iss", e.cfg.Issuer)
	u.RawQuery = q.Encode()
	noCache(w)
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// unavailable answers a step the store could not take now.
func (e *Endpoint) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	e.cfg.Log.Error("browser flow: store", "error", err)
	e.errorPage(w, r, http.StatusServiceUnavailable, "unavailable", "")
}

// Audit attribute names, as the token endpoint's where they mean the same.
const (
	attrReason   = "mcpsts.deny.reason"
	attrError    = "mcpsts.error"
	attrClientID = "mcpsts.client_id"
	attrRedirect = "mcpsts.redirect_uri"
	attrProvider = "mcpsts.subject.provider"
	attrSubject  = "mcpsts.subject.id"
	attrAudience = "mcpsts.granted.audience"
	attrScopes   = "mcpsts.granted.scopes"
	attrConsent  = "mcpsts.consent.id"
	attrDuration = "mcpsts.consent.duration"
)

// audit records one event of a flow; a failure is logged (the flow's
// outcome is recorded by the token endpoint when the code is redeemed).
func (e *Endpoint) audit(ctx context.Context, name string, attrs ...attribute.KeyValue) {
	if e.cfg.Audit == nil {
		return
	}
	sc := trace.SpanContextFromContext(ctx)
	trace.SpanFromContext(ctx).SetAttributes(attrs...)
	if err := e.cfg.Audit.Decision(name, e.cfg.Clock(), sc, attrs); err != nil {
		e.cfg.Log.Error("audit log", "event", name, "error", err)
	}
}

// bound caps a value from a request before it is recorded.
func bound(s string) string { return auditvalue.Bound(s, auditvalue.Max) }

// sourceIP is the connection's address.
func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func noCache(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// A page that follows a sign-in or a form is shown at an address of its
// own (POST or callback, 303, GET), so that a reload shows it again rather
// than sending a used state or form token: the address carries a page key,
// and the page's form token is derived from that key with the browser's
// own cookie, so that the key alone (from the history or a log) can
// neither show the page nor send its form.
const pageParam = "page"

func pageToken(browser, key string) string {
	m := hmac.New(sha256.New, []byte(browser))
	m.Write([]byte("mcpsts page\x00" + key))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// showAt keeps f for the page at path (the flow's next form) and sends
// the browser there.
func (e *Endpoint) showAt(w http.ResponseWriter, r *http.Request, f Flow, path string, extra url.Values) {
	c, err := r.Cookie(CookieName) // there: the flow was checked against it
	if err != nil {
		e.errorPage(w, r, http.StatusBadRequest, "bad_state", "login.csrf", attribute.String(attrReason, "no browser cookie"))
		return
	}
	key := Random(StateBytes)
	f.ExpiresAt = e.cfg.Clock().Add(FlowTTL)
	if err := e.cfg.Flows.SaveFlow(r.Context(), Hash(pageToken(c.Value, key)), f); err != nil {
		e.unavailable(w, r, err)
		return
	}
	q := url.Values{pageParam: {key}}
	for k, v := range extra {
		q[k] = v
	}
	http.Redirect(w, r, e.cfg.Base+path+"?"+q.Encode(), http.StatusSeeOther)
}

// page is the flow of the page key of r, for purpose, and the token its
// form sends back; an unknown, used, expired or other browser's page gets
// the error page.
func (e *Endpoint) page(w http.ResponseWriter, r *http.Request, purpose string) (Flow, string, bool) {
	token := ""
	if c, err := r.Cookie(CookieName); err == nil && r.URL.Query().Get(pageParam) != "" {
		token = pageToken(c.Value, r.URL.Query().Get(pageParam))
	}
	f, ok := e.peek(w, r, token)
	if !ok {
		return Flow{}, "", false
	}
	if f.Purpose != purpose || f.Subject == "" {
		e.errorPage(w, r, http.StatusBadRequest, "bad_state", "login.csrf", attribute.String(attrReason, "page of another step"))
		return Flow{}, "", false
	}
	return f, token, true
}
