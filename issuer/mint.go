package issuer

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mcpsts/mcpsts/internal/claimname"
	"github.com/mcpsts/mcpsts/internal/jsonstr"
)

// SubjectType says whose identity a token's sub names.
type SubjectType int

const (
	// Workload subjects (agents, servers, tools) are put in their own
	// namespace, WorkloadSubjectPrefix, so that no workload can take a
	// user's sub (RFC 9068 §5).
	Workload SubjectType = iota
	// User subjects are people, in their own namespace,
	// UserSubjectPrefix, and named with their identity provider
	// (PROVIDER/SUBJECT, as workloads are), so that two identity
	// providers' people never share a sub at any MCP server.
	User
)

// WorkloadSubjectPrefix starts the sub of every workload token, and
// UserSubjectPrefix that of every person's.
const (
	WorkloadSubjectPrefix = "workload:"
	UserSubjectPrefix     = "user:"
)

// Grant is what a token is minted for, as decided by the trust maps.
type Grant struct {
	Subject     string
	SubjectType SubjectType
	// Audience is the canonical resource URI of the one MCP server the
	// token is for.
	Audience string
	ClientID string
	Scopes   []string
	// TTL is the token lifetime; 0 means the issuer's default.
	TTL time.Duration
	// Actor is the delegation chain (RFC 8693 act), if any.
	Actor *Actor
	// Confirmation binds the token to a key (RFC 8705, RFC 9449), if set.
	Confirmation *Confirmation
	// Claims are extra claims; reserved claims may not be among them.
	Claims map[string]any
	// SingleUse marks the token valid for one use (claim single_use):
	// the first introspection claims it, and every later one says it is
	// not active.
	SingleUse bool
}

// Actor is one link of an RFC 8693 delegation chain: the current actor, and
// in Actor the one before it.
type Actor struct {
	Subject  string `json:"sub"`
	Issuer   string `json:"iss,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Actor    *Actor `json:"act,omitempty"`
}

// Confirmation is the cnf claim: exactly one of its members.
type Confirmation struct {
	// X5TS256 is the base64url SHA-256 thumbprint of a client certificate
	// (RFC 8705 §3.1).
	X5TS256 string `json:"x5t#S256,omitempty"`
	// JKT is the base64url RFC 7638 thumbprint of a DPoP key (RFC 9449 §6.1).
	JKT string `json:"jkt,omitempty"`
}

// Token is a minted access token.
type Token struct {
	Raw       string // the compact JWS; never log it
	ID        string // jti
	KeyID     string
	Subject   string
	Audience  string
	ClientID  string
	Scopes    []string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// IsReservedClaim reports whether name is a claim the issuer sets itself,
// or one a standard gives a meaning to, in any letter case: such a claim
// cannot be set through Grant.Claims.
func IsReservedClaim(name string) bool { return claimname.IsRegistered(name) }

// ErrInvalidGrant wraps every reason Mint refuses a grant.
var ErrInvalidGrant = errors.New("issuer: invalid grant")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidGrant, fmt.Sprintf(format, args...))
}

// Mint signs an access token for g. It refuses (with ErrInvalidGrant) any
// grant outside the issuer's limits, and returns ErrNoSigningKey when no key
// can sign.
func (i *Issuer) Mint(ctx context.Context, g Grant) (Token, error) {
	now := i.now()
	sub, ttl, err := i.check(g)
	if err != nil {
		return Token{}, err
	}
	key, err := i.keys.Load().signer(now)
	if err != nil {
		return Token{}, err
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Token{}, fmt.Errorf("issuer: jti: %w", err)
	}
	iat := now.Truncate(time.Second)
	c := &accessClaims{
		Issuer:    i.cfg.Issuer,
		Subject:   sub,
		Audience:  g.Audience,
		ClientID:  g.ClientID,
		Scope:     strings.Join(g.Scopes, " "),
		IssuedAt:  iat.Unix(),
		NotBefore: iat.Unix(),
		Expiry:    iat.Add(ttl).Unix(),
		ID:        base64.RawURLEncoding.EncodeToString(id[:]),
		Actor:     g.Actor,
		Cnf:       g.Confirmation,
		SingleUse: g.SingleUse,
		extra:     g.Claims,
	}
	payload, err := c.marshal()
	if err != nil {
		return Token{}, err
	}
	if len(g.Claims) > 0 {
		// Extra claims may nest objects: what the verifiers would refuse
		// (names that fold together) is not signed.
		if err := claimname.CheckPayload(payload); err != nil {
			return Token{}, invalid("extra claims: %v", err)
		}
	}
	raw, err := sign(ctx, key.signer, key.header, payload)
	if err != nil {
		return Token{}, err
	}
	return Token{
		Raw:       raw,
		ID:        c.ID,
		KeyID:     key.signer.KeyID(),
		Subject:   sub,
		Audience:  g.Audience,
		ClientID:  g.ClientID,
		Scopes:    g.Scopes,
		IssuedAt:  iat,
		ExpiresAt: iat.Add(ttl),
	}, nil
}

// sign returns the compact JWS of payload under header (RFC 7515):
// header.payload, then the signature.
func sign(ctx context.Context, s Signer, header string, payload []byte) (string, error) {
	b64 := base64.RawURLEncoding
	input := make([]byte, 0, len(header)+1+b64.EncodedLen(len(payload))+1+b64.EncodedLen(512))
	input = append(input, header...)
	input = append(input, '.')
	input = b64.AppendEncode(input, payload)
	sig, err := s.Sign(ctx, input)
	if err != nil {
		return "", err
	}
	return string(b64.AppendEncode(append(input, '.'), sig)), nil
}

// check applies the issuer's own limits to g and returns the sub and
// lifetime to use.
func (i *Issuer) check(g Grant) (sub string, ttl time.Duration, err error) {
	switch {
	case g.Subject == "":
		return "", 0, invalid("empty subject")
	case strings.ContainsFunc(g.Subject, isControl):
		return "", 0, invalid("subject holds control characters")
	}
	switch g.SubjectType {
	case Workload:
		sub = WorkloadSubjectPrefix + g.Subject
	case User:
		if provider, _, ok := strings.Cut(g.Subject, "/"); !ok || provider == "" {
			return "", 0, invalid("a user subject is PROVIDER/SUBJECT")
		}
		sub = UserSubjectPrefix + g.Subject
	default:
		return "", 0, invalid("unknown subject type %d", g.SubjectType)
	}
	if p := audienceProblem(g.Audience); p != "" {
		return "", 0, invalid("audience %s", p)
	}
	if g.ClientID == "" || strings.ContainsFunc(g.ClientID, isControl) {
		return "", 0, invalid("client_id is empty or holds control characters")
	}
	seen := make(map[string]bool, len(g.Scopes))
	for _, s := range g.Scopes {
		if !validScopeToken(s) {
			return "", 0, invalid("scope %q is not a valid scope token", s)
		}
		if seen[s] {
			return "", 0, invalid("scope %q repeated", s)
		}
		seen[s] = true
	}
	ttl = g.TTL
	if ttl == 0 {
		ttl = i.cfg.DefaultTTL
	}
	if ttl < MinTokenLifetime || ttl > i.cfg.MaxTTL {
		return "", 0, invalid("lifetime %s is outside [%s, %s]", ttl, MinTokenLifetime, i.cfg.MaxTTL)
	}
	for name := range g.Claims {
		if claimname.IsRegistered(name) {
			return "", 0, invalid("claim %q is reserved", name)
		}
		if err := claimname.CheckExtra(name); err != nil {
			return "", 0, invalid("claim %q: %v", name, err)
		}
	}
	if err := checkActor(g.Actor, 0); err != nil {
		return "", 0, err
	}
	if c := g.Confirmation; c != nil {
		if (c.X5TS256 == "") == (c.JKT == "") {
			return "", 0, invalid("cnf needs exactly one of x5t#S256 and jkt")
		}
		if b, err := base64.RawURLEncoding.DecodeString(c.X5TS256 + c.JKT); err != nil || len(b) != 32 {
			return "", 0, invalid("cnf thumbprint is not base64url of a SHA-256 digest")
		}
	}
	return sub, ttl, nil
}

// maxActorDepth bounds delegation chains.
const maxActorDepth = 8

func checkActor(a *Actor, depth int) error {
	if a == nil {
		return nil
	}
	if depth >= maxActorDepth {
		return invalid("delegation chain longer than %d", maxActorDepth)
	}
	if a.Subject == "" {
		return invalid("actor without a subject")
	}
	return checkActor(a.Actor, depth+1)
}

// audienceProblem says why aud is not an absolute URI without fragment.
func audienceProblem(aud string) string {
	u, err := url.Parse(aud)
	switch {
	case aud == "":
		return "is empty"
	case err != nil || !u.IsAbs() || u.Host == "":
		return fmt.Sprintf("%q is not an absolute URI with a host", aud)
	case u.Fragment != "" || strings.Contains(aud, "#"):
		return fmt.Sprintf("%q has a fragment", aud)
	case strings.ContainsAny(aud, " \t\r\n"):
		return fmt.Sprintf("%q holds white space", aud)
	}
	return ""
}

// validScopeToken follows RFC 6749 §3.3: 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5C || c > 0x7E {
			return false
		}
	}
	return true
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// accessClaims is the RFC 9068 claim set. Extra claims follow the fixed
// ones in the JSON object.
type accessClaims struct {
	Issuer    string        `json:"iss"`
	Subject   string        `json:"sub"`
	Audience  string        `json:"aud"`
	ClientID  string        `json:"client_id"`
	Scope     string        `json:"scope,omitempty"`
	IssuedAt  int64         `json:"iat"`
	NotBefore int64         `json:"nbf"`
	Expiry    int64         `json:"exp"`
	ID        string        `json:"jti"`
	Actor     *Actor        `json:"act,omitempty"`
	Cnf       *Confirmation `json:"cnf,omitempty"`
	SingleUse bool          `json:"single_use,omitempty"`
	extra     map[string]any
}

// marshal encodes the claims as one JSON object. (Not a MarshalJSON
// method: encoding/json re-scans what those return, a cost on every mint.)
func (c *accessClaims) marshal() ([]byte, error) {
	var b []byte
	if c.Actor == nil && c.Cnf == nil {
		// The common token, written without reflection, as encoding/json
		// writes it.
		b = make([]byte, 0, 384)
		b = jsonstr.Append(append(b, `{"iss":`...), c.Issuer)
		b = jsonstr.Append(append(b, `,"sub":`...), c.Subject)
		b = jsonstr.Append(append(b, `,"aud":`...), c.Audience)
		b = jsonstr.Append(append(b, `,"client_id":`...), c.ClientID)
		if c.Scope != "" {
			b = jsonstr.Append(append(b, `,"scope":`...), c.Scope)
		}
		b = strconv.AppendInt(append(b, `,"iat":`...), c.IssuedAt, 10)
		b = strconv.AppendInt(append(b, `,"nbf":`...), c.NotBefore, 10)
		b = strconv.AppendInt(append(b, `,"exp":`...), c.Expiry, 10)
		b = jsonstr.Append(append(b, `,"jti":`...), c.ID)
		if c.SingleUse {
			b = append(b, `,"single_use":true`...)
		}
		b = append(b, '}')
	} else {
		var err error
		if b, err = json.Marshal(c); err != nil {
			return nil, err
		}
	}
	if len(c.extra) == 0 {
		return b, nil
	}
	x, err := json.Marshal(c.extra)
	if err != nil {
		return nil, fmt.Errorf("%w: extra claims: %v", ErrInvalidGrant, err)
	}
	return append(append(b[:len(b)-1], ','), x[1:]...), nil
}
