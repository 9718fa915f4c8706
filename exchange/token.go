package exchange

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/exchange/authorize"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/consent"
)

// Grant types and token types.
const (
	GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	GrantJWTBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	GrantClientCreds   = "client_credentials"
	// AssertionJWTBearer is the client_assertion_type of private_key_jwt
	// client authentication (RFC 7523 §2.2).
	AssertionJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// EvidenceTLSClient is the Attestors key of the attestor that verifies
	// TLS client certificates (X.509-SVIDs) for tls_client_auth; it is
	// attest/spiffe's evidence type.
	EvidenceTLSClient = "urn:mcpsts:evidence:x509-svid"
	// TokenTypeMTLS names the TLS client certificate of the request as the
	// subject of a token exchange (an X.509-SVID proven on the connection);
	// the subject_token itself must be the literal "tls".
	TokenTypeMTLS = "urn:mcpsts:token-type:mtls"

	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeIDToken     = "urn:ietf:params:oauth:token-type:id_token"
)

// Decider decides what an identity gets, and who may act for it;
// *trustmaps.Policy is one.
type Decider interface {
	Decide(ctx context.Context, id attest.Identity, r trustmaps.Request) (trustmaps.Decision, error)
	MayAct(mapID string, actor attest.Identity) bool
}

// Minter signs access tokens; *issuer.Issuer is one.
type Minter interface {
	Mint(ctx context.Context, g issuer.Grant) (issuer.Token, error)
}

// Config wires the token endpoint.
type Config struct {
	// Self are the identifiers of this authorization server (its issuer):
	// an audience parameter naming it names no target (MCP clients following
	// SEP-990 send the authorization server's issuer there).
	Self []string
	// Attestors verify subject tokens by subject_token_type, and JWT bearer
	// assertions under GrantJWTBearer.
	Attestors map[string]attest.Attestor
	Decider   Decider
	Minter    Minter
	// IDJAGs signs ID-JAGs (SEP-990) for the token exchange that asks for
	// one, mcpsts being the users' identity provider; nil: not offered.
	IDJAGs IDJAGIssuer
	// ReplayAttributes names the identity attributes each decision's audit
	// line records for a later replay against other maps (all: every
	// attribute); nil records none.
	ReplayAttributes func() (names []string, all bool)
	// Replay claims the jti of this server's own ID-JAGs when they are
	// redeemed here, once across replicas; nil: they cannot be redeemed.
	Replay attest.ReplayCache
	// Tokens verifies our own tokens presented for delegation; nil
	// disables delegation.
	Tokens TokenInspector
	// Acceptor accepts our own tokens wherever the endpoint takes one
	// (delegation's subject token, introspection): the one check of
	// signature, audience, binding, revocation and single use. nil: one
	// is built on Tokens, with Revocations and Replay.
	Acceptor *Acceptor
	// Revocations is the revocation list (nil: none), read through
	// Acceptor and written when a reused authorization code revokes the
	// access token its first redemption gave.
	Revocations Revocations
	// MaxChain bounds delegation chains (0: DefaultMaxChain).
	MaxChain int
	// DefaultTTL is the issuer's default token lifetime (0: 15m), which
	// derived tokens are capped from.
	DefaultTTL time.Duration
	// Consents is the per-client consent registry checked on every
	// user-delegated exchange; nil refuses them all.
	Consents consent.Store
	// Clients are the registered clients; nil: none is.
	Clients ClientRegistry
	// PerIdentity and PerClient limit how often one verified identity, and
	// one MCP client, get tokens; past them the answer is 429 with
	// Retry-After. PerSource limits the requests of one source address
	// (the connection's IP), checked before the request is read, so that
	// no one address can make the endpoint verify credentials, or write
	// audit records of any size, as fast as it can send.
	PerIdentity, PerClient, PerSource RateLimit
	// SourcePrefixes are what PerSource keys on (an IPv6 /64 by default).
	SourcePrefixes SourcePrefixes
	// SharedLimits, when set, keeps the per-identity and per-client
	// buckets in the store the replicas share, so that N replicas allow
	// the rate once, not N times (the per-source limit stays each
	// process's: it comes before anything is read). When the store cannot
	// answer, each process's own buckets apply.
	SharedLimits SharedLimits
	// Tracer records each request's server span, which carries the
	// decision, and a child span per step (attest, decide, consent.check,
	// inspect, mint, and the federation.fetch and replay.claim under
	// attest); nil: no spans (a request still has a trace and span ID, the
	// caller's trace or a new one, for its audit line and error answer).
	Tracer trace.Tracer
	// Authorizations keeps the authorization codes and refresh tokens of
	// the browser flows; nil: the authorization_code and refresh_token
	// grants are not offered.
	Authorizations authorize.Store
	// RefreshTTL bounds a refresh token's life (0: 24h); each use rotates
	// it, and every use checks the user's consent again.
	RefreshTTL time.Duration
	// RefreshMaxLifetime is a refresh family's absolute life, from its
	// code's redemption, which no rotation extends (0: 30 days); the
	// consent bounds it too, being checked at every refresh.
	RefreshMaxLifetime time.Duration
	// DPoP verifies DPoP proofs (RFC 9449); nil: proofs are not read and
	// tokens are bearer or certificate-bound. TokenURL is this endpoint's
	// public URL, which proofs name (htu).
	DPoP     *dpop.Verifier
	TokenURL string
	// Posture gives what the posture sources say of each identity
	// decided for, from the assertions its request carries
	// (posture_token) and from the sources the broker asks; nil: none.
	Posture PostureSources
	// Audit records every decision (the audit log); nil: none.
	Audit DecisionLog
	Meter metric.Meter // nil: no metrics
	Log   *slog.Logger
	Clock func() time.Time
}

// MaxBody bounds a token request.
const MaxBody = 64 << 10

// NewHandler returns the token endpoint (POST only).
func NewHandler(cfg Config) http.Handler {
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxChain == 0 {
		cfg.MaxChain = DefaultMaxChain
	}
	if cfg.DefaultTTL == 0 {
		cfg.DefaultTTL = 15 * time.Minute
	}
	if cfg.RefreshTTL == 0 {
		cfg.RefreshTTL = 24 * time.Hour
	}
	if cfg.RefreshMaxLifetime == 0 {
		cfg.RefreshMaxLifetime = 30 * 24 * time.Hour
	}
	if cfg.Meter == nil {
		cfg.Meter = metricnoop.Meter{}
	}
	if cfg.Acceptor == nil && cfg.Tokens != nil {
		cfg.Acceptor, _ = NewAcceptor(AcceptorConfig{Tokens: cfg.Tokens, Revocations: cfg.Revocations, SingleUse: cfg.Replay, Clock: cfg.Clock})
	}
	if cfg.Acceptor != nil && cfg.Revocations != nil {
		cfg.Revocations = cfg.Acceptor // what this endpoint revokes is seen at once
	}
	inputs, _ := cfg.Decider.(conditionInputs) // before it is wrapped
	if cfg.Clients != nil && cfg.Decider != nil {
		cfg.Decider = registeredClients{cfg.Decider, cfg.Clients}
	}
	cfg = traced(cfg)
	t := &tokenEndpoint{cfg: cfg, inputs: inputs, metrics: newInstruments(cfg.Meter), perSource: newKeyedLimiter(cfg.PerSource, cfg.Clock)}
	sharedFailed := func(err error) {
		cfg.Log.Warn("shared rate limits unavailable: this process's own apply", "error", err)
	}
	t.perIdentity = &limiter{local: newKeyedLimiter(cfg.PerIdentity, cfg.Clock), shared: cfg.SharedLimits, name: "identity", onFail: sharedFailed}
	t.perClient = &limiter{local: newKeyedLimiter(cfg.PerClient, cfg.Clock), shared: cfg.SharedLimits, name: "client", onFail: sharedFailed}
	t.grants = map[string]grant{
		GrantTokenExchange: tokenExchangeGrant{t},
		GrantJWTBearer:     jwtBearerGrant{t},
		GrantClientCreds:   clientCredentialsGrant{t},
	}
	if cfg.Authorizations != nil {
		t.grants[GrantAuthorizationCode] = authorizationCodeGrant{t}
		t.grants[GrantRefreshToken] = refreshTokenGrant{t}
	}
	return t
}

type tokenEndpoint struct {
	cfg                    Config
	inputs                 conditionInputs // nil: the decider says nothing of what its maps read
	resources              trustmaps.ResourceMemo
	metrics                instruments
	perIdentity, perClient *limiter
	perSource              *keyedLimiter
	grants                 map[string]grant // by grant_type
}

// limited is the 429 answer of a rate limit.
func limited(what string, wait time.Duration) *oauthError {
	e := fail(http.StatusTooManyRequests, "slow_down", "too many token requests for this "+what+"; retry later")
	e.retryAfter, e.check = wait, "rate_limit_"+what
	return e
}

var (
	propagator = propagation.TraceContext{}
	serverSpan = trace.WithSpanKind(trace.SpanKindServer)
)

func (t *tokenEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Header.Get("traceparent") != "" {
		ctx = propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	ctx, span := t.cfg.Tracer.Start(ctx, "token", serverSpan)
	sc := span.SpanContext()
	if !span.IsRecording() {
		sc = localSpanContext(sc)
		ctx = trace.ContextWithSpanContext(ctx, sc)
	}
	ctx, ann := withAnnotations(ctx)
	defer func() {
		ann.flush(span)
		span.End()
	}()
	annotate(ctx, attribute.String(attrSourceIP, sourceIP(r)))
	start := time.Now()
	var grantType string
	resp, oerr := t.serve(ctx, r, &grantType)
	if oerr != nil {
		annotateRefusal(ctx, oerr)
	}
	if t.cfg.Audit != nil {
		name := "token.allow"
		if oerr != nil {
			name = "token.deny"
		}
		if err := t.cfg.Audit.Decision(name, t.cfg.Clock(), sc, ann.kv); err != nil {
			t.cfg.Log.Error("audit log", "error", err, "trace_id", sc.TraceID().String())
			if oerr == nil {
				oerr = auditFailed(err)
				annotateRefusal(ctx, oerr)
			}
		}
	}
	t.metrics.record(ctx, grantType, oerr, time.Since(start))
	if oerr != nil {
		traceID := sc.TraceID().String()
		// A client that tries HTTP Basic first and is told how it may
		// authenticate (the MCP Go SDK does, on every code redemption) is
		// routine: debug. Every refusal is audited either way.
		level := slog.LevelInfo
		if oerr.code == errInvalidClient && oerr.basic {
			level = slog.LevelDebug
		}
		t.cfg.Log.Log(ctx, level, "token request refused", "error", oerr.code, "description", oerr.description, "detail", oerr.detail, "trace_id", traceID)
		writeError(w, oerr, traceID)
		return
	}
	noStore(w)
	if t.cfg.DPoP != nil && t.cfg.DPoP.Nonces != nil {
		w.Header().Set(dpop.NonceHeader, t.cfg.DPoP.Nonces.Nonce()) // the next proof's (RFC 9449 §8.2)
	}
	writeToken(w, resp)
}

// tokenResponse is the success answer (RFC 6749 §5.1, RFC 8693 §2.2.1).
type tokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type,omitempty"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope,omitempty"`
	RefreshToken    string `json:"refresh_token,omitempty"`

	jti       string    // the access token's, never written
	expiresAt time.Time // its expiry
}

// form is the parsed request body: each parameter once, except those that
// may repeat; empty values count as absent.
type form map[string][]string

func (f form) get(name string) string {
	if v := f[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// repeatable parameters (RFC 8707 §2, RFC 8693 §2.1).
var repeatable = map[string]bool{"resource": true, "audience": true, ParamPostureToken: true}

func (t *tokenEndpoint) parse(r *http.Request) (form, *oauthError) {
	if r.Method != http.MethodPost {
		return nil, fail(http.StatusMethodNotAllowed, errInvalidRequest, "the token endpoint takes POST")
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "the body must be application/x-www-form-urlencoded")
	}
	if r.URL.RawQuery != "" {
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "parameters go in the body, not the query string")
	}
	values, tooBig, err := readForm(r.Body, MaxBody)
	switch {
	case tooBig:
		return nil, fail(http.StatusRequestEntityTooLarge, errInvalidRequest, fmt.Sprintf("the request is larger than %d bytes", MaxBody))
	case errors.Is(err, errFormEncoding):
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "the body is not valid form encoding")
	case err != nil:
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "the body could not be read")
	}
	f := form{}
	for name, vs := range values {
		var kept []string
		for _, v := range vs {
			if v != "" {
				kept = append(kept, v)
			}
		}
		if len(kept) == 0 {
			continue
		}
		if len(kept) > 1 && !repeatable[name] {
			return nil, fail(http.StatusBadRequest, errInvalidRequest, fmt.Sprintf("parameter %s is repeated", truncate(name)))
		}
		f[name] = kept
	}
	return f, nil
}

// clientAuth checks that a request uses at most one client authentication
// method (RFC 6749 §2.3) and refuses those mcpsts does not offer: no
// client secrets are ever issued. The one it offers, a federated workload
// JWT as client_assertion, is verified by the client credentials grant.
func clientAuth(r *http.Request, f form) *oauthError {
	methods := 0
	_, _, basic := r.BasicAuth()
	if basic {
		methods++
	}
	assertion := f.get("client_assertion") != "" || f.get("client_assertion_type") != ""
	if assertion {
		methods++
	}
	if f.get("client_secret") != "" {
		methods++
	}
	switch {
	case methods > 1:
		return fail(http.StatusBadRequest, errInvalidRequest, "use one client authentication method per request")
	case basic:
		e := fail(http.StatusUnauthorized, errInvalidClient, "mcpsts issues no client secrets: authenticate with the workload's own credential (subject_token, assertion or client_assertion)")
		e.basic = true
		return e
	case assertion && (f.get("client_assertion_type") != AssertionJWTBearer || f.get("client_assertion") == ""):
		return fail(http.StatusUnauthorized, errInvalidClient, "client_assertion_type must be "+AssertionJWTBearer+", with a client_assertion")
	case methods == 1 && !assertion:
		return fail(http.StatusUnauthorized, errInvalidClient, "this client authentication method is not supported")
	}
	return nil
}

func (t *tokenEndpoint) serve(ctx context.Context, r *http.Request, grantType *string) (*tokenResponse, *oauthError) {
	if ok, wait := t.perSource.allow(t.cfg.SourcePrefixes.key(r)); !ok {
		return nil, limited("source", wait)
	}
	f, oerr := t.parse(r)
	if oerr != nil {
		return nil, oerr
	}
	if oerr := clientAuth(r, f); oerr != nil {
		return nil, oerr
	}
	if ctx, oerr = withPostureTokens(ctx, f); oerr != nil {
		return nil, oerr
	}
	gt := f.get("grant_type")
	*grantType = gt
	if knownGrants[gt] {
		annotate(ctx, attribute.String(attrGrantType, gt))
	} else if gt != "" {
		// Recorded as such, never echoed: the value is the client's.
		annotate(ctx, attribute.String(attrGrantType, "unsupported"))
	}
	ctx, oerr = t.verifyProof(ctx, r)
	if oerr != nil {
		return nil, oerr
	}
	if f.get("client_assertion") != "" && gt != GrantClientCreds && !idjagRequest(gt, f) {
		return nil, fail(http.StatusUnauthorized, errInvalidClient, "a client_assertion is only used by the "+GrantClientCreds+" grant and by ID-JAG requests")
	}
	g, ok := t.grants[gt]
	switch {
	case gt == "":
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "grant_type is required")
	case !ok:
		supported := []string{GrantTokenExchange, GrantJWTBearer, GrantClientCreds}
		if t.cfg.Authorizations != nil {
			supported = append(supported, GrantAuthorizationCode, GrantRefreshToken)
		}
		return nil, fail(http.StatusBadRequest, errUnsupportedGrantType, "supported grant types: "+strings.Join(supported, ", "))
	}
	return g.serve(ctx, r, f)
}

// A grant serves the token requests of one grant_type: it checks the
// request's own parameters and credential, then hands the verified
// identity to the steps every grant shares (grant: decide, check the
// client, mint), so that none can be skipped. Each lives in its own file;
// the OAuth error mapping is in errors.go.
type grant interface {
	serve(ctx context.Context, r *http.Request, f form) (*tokenResponse, *oauthError)
}

// targets reads resource and audience: every value must name the same MCP
// server once canonicalised (one token, one server).
func (t *tokenEndpoint) targets(f form) (string, *oauthError) {
	var target string
	for _, name := range []string{"resource", "audience"} {
		for _, v := range f[name] {
			if name == "audience" && slices.Contains(t.cfg.Self, strings.TrimSuffix(v, "/")) {
				continue
			}
			canon, err := t.resources.Canonical(v)
			if err != nil {
				return "", fail(http.StatusBadRequest, errInvalidTarget, name+" "+err.Error())
			}
			if target != "" && canon != target {
				return "", fail(http.StatusBadRequest, errInvalidTarget, "a token is for exactly one MCP server: the request names several")
			}
			target = canon
		}
	}
	return target, nil
}

func (t *tokenEndpoint) grant(ctx context.Context, r *http.Request, f form, id attest.Identity, grantType, issuedType string) (*tokenResponse, *oauthError) {
	annotateIdentity(ctx, id, false)
	target, oerr := t.targets(f)
	if oerr != nil {
		return nil, oerr
	}
	scopes := strings.Fields(f.get("scope"))
	annotate(ctx, attribute.String(attrRequestAudience, target), attribute.String(attrRequestScopes, strings.Join(scopes, " ")))
	if ok, wait := t.perIdentity.allow(ctx, id.Provider+"\x00"+id.Subject); !ok {
		return nil, limited("identity", wait)
	}
	d, oerr := t.decideGrant(ctx, r, id, trustmaps.Request{Audience: target, Scopes: scopes, GrantType: grantType})
	if oerr != nil {
		return nil, oerr
	}
	if oerr := sentClient(ctx, f, d); oerr != nil {
		return nil, oerr
	}
	if ok, wait := t.perClient.allow(ctx, d.ClientID); !ok {
		return nil, limited("client", wait)
	}
	return t.issue(ctx, r, d, principal{subject: id.Provider + "/" + id.Subject, kind: issuer.Workload}, scopes, issuedType)
}

// sentClient refuses, whatever the grant, a request that names a client_id
// other than the client the trust maps decided for its identity: a token
// is never issued to a client the caller did not ask to be (RFC 6749 §3.2.1
// binds a client's requests to its identity). Both IDs go to the audit
// record.
func sentClient(ctx context.Context, f form, d trustmaps.Decision) *oauthError {
	c := f.get("client_id")
	if c == "" {
		return nil
	}
	annotate(ctx, attribute.String(attrRequestClientID, c))
	if c == d.ClientID {
		return nil
	}
	return &oauthError{status: http.StatusUnauthorized, code: errInvalidClient, check: "client_id_mismatch",
		description: "client_id is not the client the trust maps decide for this identity",
		detail:      fmt.Sprintf("client_id %q sent, map %s decides %q", truncate(c), d.MapID, d.ClientID)}
}

// mint binds the grant as the map requires, signs it and builds the
// answer; requested are the scopes the client asked for.
func (t *tokenEndpoint) mint(ctx context.Context, r *http.Request, g issuer.Grant, binding string, requested []string, issuedType string) (*tokenResponse, *oauthError) {
	proof, proven := proofOf(ctx)
	switch {
	case binding == "mtls":
		certs := peer(r)
		if len(certs) == 0 {
			return nil, fail(http.StatusBadRequest, errInvalidRequest, "the trust map requires a certificate-bound token: present a client certificate")
		}
		sum := sha256.Sum256(certs[0].Raw)
		g.Confirmation = &issuer.Confirmation{X5TS256: base64.RawURLEncoding.EncodeToString(sum[:])}
	case proven:
		// Bound whenever a proof comes, required or not.
		g.Confirmation, binding = &issuer.Confirmation{JKT: proof.JKT}, "dpop"
	case binding == "dpop" && t.cfg.DPoP == nil:
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "the trust map requires a DPoP-bound token, which this server does not offer")
	case binding == "dpop":
		e := fail(http.StatusBadRequest, errInvalidDPoPProof, "the trust map requires a DPoP-bound token: send a DPoP proof")
		e.check = "dpop_required"
		return nil, e
	}
	tok, err := t.cfg.Minter.Mint(ctx, g)
	if err != nil {
		return nil, mintError(err)
	}
	annotateToken(ctx, tok, binding)
	tokenType := "Bearer"
	if binding == "dpop" {
		tokenType = dpop.Scheme
	}
	resp := &tokenResponse{
		jti: tok.ID, expiresAt: tok.ExpiresAt,
		AccessToken: tok.Raw, IssuedTokenType: issuedType, TokenType: tokenType,
		ExpiresIn: int64(tok.ExpiresAt.Sub(t.cfg.Clock()) / time.Second), // whole seconds left, never more
	}
	if resp.ExpiresIn < 1 {
		resp.ExpiresIn = 1
	}
	if granted := strings.Join(g.Scopes, " "); granted != strings.Join(requested, " ") {
		resp.Scope = granted
	}
	return resp, nil
}

// mintError is the answer when the issuer cannot sign.
func mintError(err error) *oauthError {
	if errors.Is(err, issuer.ErrNoSigningKey) {
		return &oauthError{status: http.StatusServiceUnavailable, code: errUnavailable, description: "no signing key is available; retry later", detail: err.Error()}
	}
	return &oauthError{status: http.StatusInternalServerError, code: errServerError, description: "internal error", detail: err.Error()}
}

func peer(r *http.Request) []*x509.Certificate {
	if r.TLS == nil {
		return nil
	}
	return r.TLS.PeerCertificates
}

func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	return host
}

// truncate bounds a request value quoted in an error description.
func truncate(s string) string { return bound(s, 100) }
