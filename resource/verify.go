package resource

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/internal/claimname"
)

// Claims are the verified claims of a caller's access token.
//
// Authorize on Subject, ClientID, the scopes and the current Actor's
// Subject and ClientID only (RFC 8693 §4.1): earlier actors (Actor.Actor)
// are a record of the delegation path, for logs and audit.
type Claims struct {
	Subject   string
	ClientID  string
	Scopes    []string // as the token grants them, before Config.Implies
	Actor     *Actor   // the service acting for Subject, nil when none
	ID        string   // jti
	IssuedAt  time.Time
	ExpiresAt time.Time
	// CertThumbprint is the x5t#S256 the token is bound to (and the
	// connection proved), "" for a plain bearer token.
	CertThumbprint string
	// DPoPKey is the jkt of the DPoP key the token is bound to (and the
	// request proved), "" for a token not DPoP-bound.
	DPoPKey string
	// SingleUse: the token is valid for one use (claim single_use);
	// Config.Introspection enforces it.
	SingleUse bool
}

// Actor is one link of an act chain.
type Actor struct {
	Subject  string `json:"sub"`
	ClientID string `json:"client_id,omitempty"`
	Actor    *Actor `json:"act,omitempty"` // the actor before this one
}

// Chain lists the actors, the current one first, for logs.
func (c Claims) Chain() []string {
	var out []string
	for a := c.Actor; a != nil; a = a.Actor {
		out = append(out, a.Subject)
	}
	return out
}

// tokenError is why a token is refused: a public description for the
// challenge, and whether the fault is ours (keys unavailable) rather than
// the token's.
type tokenError struct {
	description string
	unavailable bool
	// dpop is the error of a DPoP proof (invalid_dpop_proof,
	// use_dpop_nonce), answered in the DPoP challenge.
	dpop string
	err  error // private detail, for the server's log; never holds the token
}

func (e *tokenError) Error() string { return e.description }
func (e *tokenError) Unwrap() error { return e.err }

func refuse(description string, err error) *tokenError {
	return &tokenError{description: description, err: err}
}

type tokenClaims struct {
	jwt.RegisteredClaims
	ClientID  string         `json:"client_id"`
	Scope     string         `json:"scope"`
	Act       *Actor         `json:"act"`
	Cnf       map[string]any `json:"cnf"`
	SingleUse bool           `json:"single_use"`
}

// maxTokenBytes bounds the work a token may cause before its signature is
// checked; our tokens are well under 2 KiB.
const maxTokenBytes = 8 << 10

func (s *Server) parser() *jwt.Parser {
	return jwt.NewParser(
		jwt.WithValidMethods(s.validAlgs),
		jwt.WithIssuer(s.cfg.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(s.cfg.Leeway),
		jwt.WithTimeFunc(s.cfg.Clock),
	)
}

// verified is a token that verified, kept by the SHA-256 of its text.
type verified struct {
	claims    Claims
	kid       string
	notBefore time.Time // nbf, or iat when later
	cnf       map[string]any
}

// keyChecker is a KeySource that can say, without fetching, whether a key
// is still published; only then are verified tokens cached, so that a
// token stops verifying from cache once its key rotates away.
type keyChecker interface{ Has(kid string) bool }

// verify checks raw as an access token for this server and returns its
// claims. peer is the connection's client certificate chain, if any. A
// token verified before is taken from the cache when its times still hold
// and its key is still published; its binding is checked every time.
func (s *Server) verify(ctx context.Context, raw string) (Claims, map[string]any, *tokenError) {
	if len(raw) > maxTokenBytes {
		return Claims{}, nil, refuse("the token is too large", nil)
	}
	var sum [32]byte
	if s.cache != nil {
		sum = sha256.Sum256([]byte(raw))
		if v, ok := s.cache.Get(sum); ok {
			now := s.cfg.Clock()
			if now.Before(v.claims.ExpiresAt.Add(s.cfg.Leeway)) && !now.Before(v.notBefore.Add(-s.cfg.Leeway)) && s.keys.(keyChecker).Has(v.kid) {
				return v.claims, v.cnf, nil
			}
			s.cache.Remove(sum)
		}
	}
	var c tokenClaims
	var keyErr *tokenError
	var kid string
	_, err := s.jwtParser.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		keyErr = s.checkHeader(t.Header)
		if keyErr != nil {
			return nil, keyErr
		}
		kid, _ = t.Header["kid"].(string)
		k, err := s.keys.Key(ctx, kid, t.Method.Alg())
		if err != nil {
			keyErr = refuse("the token is not signed by a key of the authorization server", err)
			keyErr.unavailable = errors.Is(err, federation.ErrNotReady)
			return nil, keyErr
		}
		return k, nil
	})
	switch {
	case keyErr != nil:
		return Claims{}, nil, keyErr
	case err == nil:
	case errors.Is(err, jwt.ErrTokenMalformed):
		return Claims{}, nil, refuse("the token is not a well-formed JWT", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return Claims{}, nil, refuse("the token's signature does not verify", err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return Claims{}, nil, refuse("the token has expired", err)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return Claims{}, nil, refuse("the token is not valid yet", err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return Claims{}, nil, refuse("the token was issued by another authorization server", err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return Claims{}, nil, refuse("the token has no expiry", err)
	default:
		return Claims{}, nil, refuse("the token is not valid", err)
	}
	// encoding/json read the claims without regard to case, keeping the
	// last of names that fold together: a payload where that could
	// matter ("Aud" or "Scope" beside the real ones) is refused.
	if err := claimname.CheckPayload(payloadOf(raw)); err != nil {
		return Claims{}, nil, refuse("the token has member names that differ only in letter case", err)
	}
	if len(c.Audience) != 1 || c.Audience[0] != s.cfg.Resource {
		return Claims{}, nil, refuse("the token is not for this server (aud)", nil)
	}
	var missing []string
	for name, v := range map[string]string{"sub": c.Subject, "client_id": c.ClientID, "jti": c.ID} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if c.IssuedAt == nil {
		missing = append(missing, "iat")
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return Claims{}, nil, refuse("the token lacks "+strings.Join(missing, ", "), nil)
	}
	out := Claims{Subject: c.Subject, ClientID: c.ClientID, Scopes: strings.Fields(c.Scope), Actor: c.Act, ID: c.ID,
		IssuedAt: c.IssuedAt.Time, ExpiresAt: c.ExpiresAt.Time, SingleUse: c.SingleUse}
	if c.Act != nil && c.Act.Subject == "" {
		return Claims{}, nil, refuse("the token's act has no sub", nil)
	}
	if s.cache != nil {
		nb := out.IssuedAt
		if c.NotBefore != nil && c.NotBefore.After(nb) {
			nb = c.NotBefore.Time
		}
		s.cache.Add(sum, verified{claims: out, kid: kid, notBefore: nb, cnf: c.Cnf})
	}
	return out, c.Cnf, nil
}

// payloadOf decodes the payload of a compact JWS that has parsed.
func payloadOf(raw string) []byte {
	_, rest, _ := strings.Cut(raw, ".")
	seg, _, _ := strings.Cut(rest, ".")
	b, _ := base64.RawURLEncoding.DecodeString(seg)
	return b
}

// bind enforces a token's cnf, if any, on this request: a
// certificate-bound token needs the connection's certificate, a DPoP-bound
// one the DPoP scheme and a proof of its key for this request. scheme is
// the Authorization header's.
func (s *Server) bind(r *http.Request, scheme, raw string, c Claims, cnf map[string]any) (Claims, *tokenError) {
	var peer []*x509.Certificate
	if r.TLS != nil {
		peer = r.TLS.PeerCertificates
	}
	jkt, dpopBound := cnf["jkt"].(string)
	switch {
	case cnf != nil && len(cnf) != 1:
		return Claims{}, refuse("the token's cnf must hold exactly one confirmation method", nil)
	case dpopBound && s.proofs == nil:
		return Claims{}, refuse("the token is DPoP-bound; this server accepts bearer and certificate-bound tokens only", nil)
	case dpopBound && scheme != dpop.Scheme:
		// RFC 9449 §7.2: a DPoP-bound token is never a bearer token.
		return Claims{}, refuse("the token is DPoP-bound: send it with the DPoP scheme and a proof", nil)
	case dpopBound:
		if terr := s.proofFor(r, raw, jkt); terr != nil {
			return Claims{}, terr
		}
		c.DPoPKey = jkt
		return c, nil
	case scheme == dpop.Scheme:
		return Claims{}, refuse("the token is not DPoP-bound: send it as a Bearer token", nil)
	case s.cfg.DPoP != nil && s.cfg.DPoP.Required:
		return Claims{}, &tokenError{description: "this server requires DPoP-bound tokens", dpop: "invalid_token"}
	case cnf == nil:
		return c, nil
	}
	tp, terr := bindingCheck(cnf, peer)
	if terr != nil {
		return Claims{}, terr
	}
	c.CertThumbprint = tp
	return c, nil
}

// checkHeader refuses what RFC 9068 §4 and RFC 8725 forbid: another typ,
// critical extensions we would ignore. Keys are never taken from jku, x5u,
// x5c or jwk: only from the broker's published set.
func (s *Server) checkHeader(h map[string]any) *tokenError {
	typ, _ := h["typ"].(string)
	if !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
		return refuse("the token is not an access token (typ must be at+jwt)", nil)
	}
	if _, ok := h["crit"]; ok {
		return refuse("the token has critical header parameters this server does not understand", nil)
	}
	if kid, ok := h["kid"]; ok {
		if _, isString := kid.(string); !isString {
			return refuse("the token's kid is not a string", nil)
		}
	}
	return nil
}

// bindingCheck enforces a certificate binding (RFC 8705 §3): the token
// must come over a connection that proved that certificate.
func bindingCheck(cnf map[string]any, peer []*x509.Certificate) (string, *tokenError) {
	want, ok := cnf["x5t#S256"].(string)
	if !ok {
		return "", refuse("the token's cnf holds a confirmation method this server does not know", nil)
	}
	if len(peer) == 0 {
		return "", refuse("the token is bound to a client certificate the connection did not present", nil)
	}
	sum := sha256.Sum256(peer[0].Raw)
	if got := base64.RawURLEncoding.EncodeToString(sum[:]); got != want {
		return "", refuse("the token is bound to another client certificate", fmt.Errorf("x5t#S256 mismatch"))
	}
	return want, nil
}

// Principal is who an MCP session is bound to: the subject, the client and
// the current actor, so that neither another client of the same subject
// nor another actor can take over a session (a session ID alone never
// authenticates).
func (c Claims) Principal() string {
	p := "sub=" + c.Subject + "\x00client_id=" + c.ClientID
	if c.Actor != nil {
		p += "\x00act=" + c.Actor.Subject
	}
	return p
}
