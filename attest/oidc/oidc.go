// Package oidc verifies JWTs from the OIDC issuers an operator trusts
// (Kubernetes service-account tokens, GitHub Actions and GitLab CI ID
// tokens, any OIDC provider) and turns them into attest.Identity values.
package oidc

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/internal/claimname"
)

// Kinds of the identities from this package: workloads, and users of a
// provider marked as a user provider (the corporate IdP).
const (
	Kind     = "oidc"
	UserKind = "user"
)

// MaxTokenSize is the largest token accepted, in bytes.
const MaxTokenSize = 16 << 10

// ProviderConfig says how to accept the tokens of one trusted issuer.
type ProviderConfig struct {
	Keys *federation.Provider
	// Audiences lists the aud values that address this broker; a token
	// must carry at least one. A token addressed to another service is
	// refused: it was not meant for us, and using it would be passthrough.
	Audiences []string
	// NoAudience accepts tokens whatever their aud, for issuers that do
	// not address their statements to us (a posture source that sets no
	// audience); it excludes Audiences. Never for credentials.
	NoAudience bool
	// Leeway absorbs clock differences in exp, nbf and iat (default 60s).
	Leeway time.Duration
	// MaxTokenAge refuses tokens issued longer ago (default 24h); tokens
	// must then carry iat.
	MaxTokenAge time.Duration
	// RequiredClaims must be present (beyond iss, sub, aud, exp).
	RequiredClaims []string
	// Typ, when set, is the header typ a token must have.
	Typ string
	// Preset parses a platform's claim shape into named attributes.
	Preset Preset
	// SingleUse makes each token usable once (attest.SingleUse claims the
	// identity's ReplayKey, the jti or the token's hash, until exp).
	SingleUse bool
	// Users marks a provider of user identities: its identities have Kind
	// UserKind, and get tokens only through a workload acting for them with
	// the user's consent.
	Users bool
	// IDJAG marks a user provider that issues Identity Assertion JWT
	// Authorization Grants (typ oauth-id-jag+jwt, SEP-990): only its
	// tokens of that type are accepted as ID-JAGs, and each is usable once
	// (its jti, required).
	IDJAG bool
	// IDJAGMaxLifetime bounds an accepted ID-JAG's exp - iat (0:
	// DefaultIDJAGMaxLifetime): ID-JAGs are used at once.
	IDJAGMaxLifetime time.Duration
}

// Verifier verifies tokens from several trusted issuers, each routed by its
// exact iss. It is safe for concurrent use.
type Verifier struct {
	byIssuer map[string]*provider
	parser   *jwt.Parser
	now      func() time.Time
	cache    *verifiedCache // nil: no cache
}

// Options configure a Verifier.
type Options struct {
	Now func() time.Time // nil means time.Now
	// CacheEntries bounds a cache of verified tokens, keyed by their
	// SHA-256, so that a workload reusing its platform token (Kubernetes
	// tokens live up to an hour) is not verified again on every request.
	// A cached token is re-checked for time (exp, nbf, max age) on every
	// use and dropped once its key leaves the provider's key set; tokens of
	// single-use providers are never cached. 0 disables the cache.
	CacheEntries int
}

type provider struct {
	ProviderConfig
	validator *jwt.Validator
}

// New returns a Verifier for providers, without a cache. Every problem is
// reported at once.
func New(now func() time.Time, providers ...ProviderConfig) (*Verifier, error) {
	return NewVerifier(Options{Now: now}, providers...)
}

// NewVerifier returns a Verifier for providers. Every problem is reported
// at once.
func NewVerifier(o Options, providers ...ProviderConfig) (*Verifier, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	v := &Verifier{byIssuer: map[string]*provider{}, now: now}
	if o.CacheEntries > 0 {
		v.cache = newVerifiedCache(o.CacheEntries)
	}
	var errs []error
	for i, pc := range providers {
		if pc.Keys == nil {
			errs = append(errs, fmt.Errorf("oidc: provider %d: no keys", i))
			continue
		}
		name := pc.Keys.Name()
		if _, dup := v.byIssuer[pc.Keys.Issuer()]; dup {
			errs = append(errs, fmt.Errorf("oidc: provider %s: issuer %s is trusted twice", name, pc.Keys.Issuer()))
		}
		if len(pc.Audiences) == 0 && !pc.NoAudience {
			errs = append(errs, fmt.Errorf("oidc: provider %s: audiences: at least one is required", name))
		}
		if len(pc.Audiences) > 0 && pc.NoAudience {
			errs = append(errs, fmt.Errorf("oidc: provider %s: audiences and no audience both given", name))
		}
		if pc.Leeway == 0 {
			pc.Leeway = 60 * time.Second
		}
		if pc.MaxTokenAge == 0 {
			pc.MaxTokenAge = 24 * time.Hour
		}
		if pc.Leeway < 0 || pc.Leeway > 5*time.Minute {
			errs = append(errs, fmt.Errorf("oidc: provider %s: leeway %s is out of range (0 to 5m)", name, pc.Leeway))
		}
		if pc.Preset == "" {
			pc.Preset = Generic
		}
		preset, ok := presets[pc.Preset]
		if !ok {
			errs = append(errs, fmt.Errorf("oidc: provider %s: unknown preset %q", name, pc.Preset))
		}
		pc.RequiredClaims = append(append([]string(nil), preset.required...), pc.RequiredClaims...)
		rules := []jwt.ParserOption{
			jwt.WithIssuer(pc.Keys.Issuer()),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(pc.Leeway),
			jwt.WithTimeFunc(now),
		}
		if !pc.NoAudience {
			rules = append(rules, jwt.WithAudience(pc.Audiences...))
		}
		v.byIssuer[pc.Keys.Issuer()] = &provider{ProviderConfig: pc, validator: jwt.NewValidator(rules...)}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Signatures only: claims are validated per provider once the signature
	// holds. No HMAC and no none, whatever a provider allows.
	v.parser = jwt.NewParser(jwt.WithValidMethods(federation.SupportedAlgorithms()), jwt.WithoutClaimsValidation())
	return v, nil
}

// CacheLen is the number of verified tokens cached.
func (v *Verifier) CacheLen() int {
	if v.cache == nil {
		return 0
	}
	return v.cache.len()
}

// Issuers lists the trusted issuers.
func (v *Verifier) Issuers() []string {
	out := make([]string, 0, len(v.byIssuer))
	for iss := range v.byIssuer {
		out = append(out, iss)
	}
	return out
}

// Trusts reports whether iss is a trusted issuer (exactly).
func (v *Verifier) Trusts(iss string) bool { return v.byIssuer[iss] != nil }

var errUntrusted = errors.New("untrusted issuer")

// Attest implements attest.Attestor.
func (v *Verifier) Attest(ctx context.Context, ev attest.Evidence) (attest.Identity, error) {
	raw := string(ev.Token)
	if len(raw) > MaxTokenSize {
		return attest.Identity{}, attest.Invalid("token_too_large", fmt.Sprintf("%d bytes, at most %d", len(raw), MaxTokenSize))
	}
	// A token verified before is these very bytes, whose header was
	// checked then: the cache answers first.
	var sum [32]byte
	if v.cache != nil {
		sum = sha256.Sum256(ev.Token)
		if id, ok := v.cache.get(sum, v.now()); ok {
			return id, nil
		}
	}
	hdr, err := checkHeader(raw)
	if err != nil {
		return attest.Identity{}, err
	}
	var p *provider
	var kid string
	claims := jwt.MapClaims{}
	_, err = v.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		iss, _ := claims["iss"].(string)
		if p = v.byIssuer[iss]; p == nil {
			return nil, errUntrusted
		}
		kid, _ = t.Header["kid"].(string)
		return p.Keys.Key(ctx, kid, t.Method.Alg())
	})
	if err != nil {
		return attest.Identity{}, parseError(err, claims)
	}
	if err := p.validator.Validate(claims); err != nil {
		return attest.Identity{}, claimsError(err)
	}
	id, err := p.identity(raw, hdr, claims, v.now())
	if err == nil && v.cache != nil && !p.SingleUse && kid != "" {
		v.cache.put(sum, cached{id: id, p: p, kid: kid, claims: claims})
	}
	return id, err
}

// header is what we read of the JOSE header ourselves.
type header struct {
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
}

// checkHeader refuses headers golang-jwt would accept but we must not: a
// repeated member (JSON parsers disagree on which wins; members that
// differ only in letter case count as repeated) and crit (we understand no
// extension). jku, x5u, x5c and jwk are never read.
func checkHeader(raw string) (header, error) {
	seg, _, ok := strings.Cut(raw, ".")
	if !ok {
		return header{}, attest.Invalid("malformed_token", "not a compact JWS")
	}
	var stack [512]byte
	b := stack[:0]
	if n := base64.RawURLEncoding.DecodedLen(len(seg)); n > len(stack) {
		b = make([]byte, 0, n)
	}
	b, err := base64.RawURLEncoding.AppendDecode(b, []byte(seg))
	if err != nil {
		return header{}, attest.Invalid("malformed_token", "header is not base64url")
	}
	if err := claimname.CheckPayload(b); err != nil {
		return header{}, attest.Invalid("malformed_token", "header members repeated")
	}
	var h header
	if err := json.Unmarshal(b, &h); err != nil || len(b) == 0 || b[0] != '{' {
		return header{}, attest.Invalid("malformed_token", "header is not a JSON object, or its typ not a string")
	}
	if h.Crit != nil {
		return header{}, attest.Invalid("unsupported_token", "header has crit extensions")
	}
	return h, nil
}

func parseError(err error, claims jwt.MapClaims) error {
	switch {
	case errors.Is(err, errUntrusted):
		iss, _ := claims["iss"].(string)
		return attest.Invalid("untrusted_issuer", fmt.Sprintf("issuer %q is not configured", truncate(iss)))
	case errors.Is(err, federation.ErrNotReady):
		return &attest.Error{Kind: attest.ErrUnavailable, Reason: "issuer_keys_unavailable", Detail: err.Error()}
	case errors.Is(err, federation.ErrUnknownKey):
		return attest.Invalid("unknown_key", err.Error())
	case errors.Is(err, jwt.ErrTokenMalformed):
		return attest.Invalid("malformed_token", "")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if strings.Contains(err.Error(), "signing method") {
			return attest.Invalid("algorithm_not_allowed", "")
		}
		return attest.Invalid("bad_signature", "")
	}
	return attest.Invalid("bad_signature", "")
}

func claimsError(err error) error {
	for _, c := range []struct {
		err    error
		reason string
	}{
		{jwt.ErrTokenRequiredClaimMissing, "missing_claim"},
		{jwt.ErrTokenInvalidIssuer, "untrusted_issuer"},
		{jwt.ErrTokenInvalidAudience, "wrong_audience"},
		{jwt.ErrTokenExpired, "token_expired"},
		{jwt.ErrTokenNotValidYet, "token_not_yet_valid"},
		{jwt.ErrTokenUsedBeforeIssued, "token_issued_in_future"},
		{jwt.ErrTokenInvalidClaims, "invalid_claims"},
	} {
		if errors.Is(err, c.err) {
			return attest.Invalid(c.reason, err.Error())
		}
	}
	return attest.Invalid("invalid_claims", err.Error())
}

func (p *provider) identity(raw string, hdr header, claims jwt.MapClaims, now time.Time) (attest.Identity, error) {
	idjag := IsIDJAGType(hdr.Typ)
	switch {
	case idjag && !(p.IDJAG && p.Users):
		return attest.Identity{}, attest.Invalid("not_an_id_jag_issuer", fmt.Sprintf("provider %s does not issue ID-JAGs", p.Keys.Name()))
	case idjag:
		if jti, _ := claims["jti"].(string); jti == "" {
			return attest.Identity{}, attest.Invalid("missing_claim", "jti")
		}
		iat, errI := claims.GetIssuedAt()
		exp, errE := claims.GetExpirationTime()
		if max := cmp.Or(p.IDJAGMaxLifetime, DefaultIDJAGMaxLifetime); errI == nil && errE == nil && iat != nil && exp != nil && exp.Sub(iat.Time) > max {
			return attest.Identity{}, attest.Invalid("id_jag_lifetime", fmt.Sprintf("the ID-JAG lives %s, more than %s", exp.Sub(iat.Time), max))
		}
	case p.Typ != "" && !strings.EqualFold(strings.TrimPrefix(hdr.Typ, "application/"), p.Typ):
		return attest.Identity{}, attest.Invalid("wrong_token_type", fmt.Sprintf("typ %q, want %q", truncate(hdr.Typ), p.Typ))
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return attest.Identity{}, attest.Invalid("missing_claim", "sub")
	}
	iat, err := claims.GetIssuedAt()
	switch {
	case err != nil || iat == nil:
		return attest.Identity{}, attest.Invalid("missing_claim", "iat")
	case now.Sub(iat.Time) > p.MaxTokenAge+p.Leeway:
		return attest.Identity{}, attest.Invalid("token_too_old", fmt.Sprintf("issued %s, more than %s ago", iat.UTC().Format(time.RFC3339), p.MaxTokenAge))
	}
	for _, c := range p.RequiredClaims {
		if _, ok := claims[c]; !ok {
			return attest.Identity{}, attest.Invalid("missing_claim", c)
		}
	}
	exp, _ := claims.GetExpirationTime() // required by the validator
	attrs := map[string]any(claims)
	if err := presets[p.Preset].parse(sub, attrs); err != nil {
		return attest.Identity{}, err
	}
	kind := Kind
	if p.Users {
		kind = UserKind
	}
	id := attest.Identity{
		Kind:       kind,
		Provider:   p.Keys.Name(),
		Issuer:     p.Keys.Issuer(),
		Subject:    sub,
		Attributes: attrs,
		Expiry:     exp.Time,
	}
	// An ID-JAG is used once, claimed by the grant once its client has
	// authenticated: whoever else sees one cannot use it up.
	id.ClaimLater = idjag
	if p.SingleUse || idjag {
		if jti, _ := claims["jti"].(string); jti != "" {
			id.ReplayKey = "oidc:" + id.Provider + ":jti:" + jti
		} else {
			sum := sha256.Sum256([]byte(raw))
			id.ReplayKey = "oidc:" + id.Provider + ":sha256:" + hex.EncodeToString(sum[:])
		}
	}
	return id, nil
}

// IDJAGType is the JOSE typ of an Identity Assertion JWT Authorization
// Grant (SEP-990).
const IDJAGType = "oauth-id-jag+jwt"

// DefaultIDJAGMaxLifetime is the longest an ID-JAG from a provider may live
// unless its configuration says otherwise: the lifetime of the ID-JAGs
// mcpsts issues itself.
const DefaultIDJAGMaxLifetime = 5 * time.Minute

// IsIDJAGType reports whether a JOSE typ names an ID-JAG (case-insensitive,
// with or without the application/ prefix, RFC 7515 §4.1.9).
func IsIDJAGType(typ string) bool {
	return strings.EqualFold(strings.TrimPrefix(strings.ToLower(typ), "application/"), IDJAGType)
}

// truncate keeps attacker-chosen strings short in messages.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
