package exchange

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/issuer"
)

// The one acceptance of this broker's own access tokens. Every place of the
// broker that accepts a token mcpsts minted (the admin API, the
// administrator login of introspection, introspection itself, delegation's
// subject token) calls Acceptor.Accept, and the edges (resource, the
// gateway) reach it through introspection: signature and claims, audience,
// binding, revocation (jti, subject, client, issued-before) and single use
// are checked in this one place, so that no path can skip one.

// Acceptance says what the place accepting a token requires of it.
type Acceptance struct {
	// Audience the token must be addressed to; "" accepts any audience,
	// which the caller then judges (delegation, introspection).
	Audience string
	// Holder makes the token a credential of the request: a
	// sender-constrained token is accepted only from its holder, Peer
	// being the connection's client certificate chain and ProofJKT the
	// thumbprint of a DPoP proof this request carried and that was
	// verified ("" for none). Without Holder the token is a statement
	// about its subject (the subject token of a delegation, a token being
	// introspected), whose holder is checked elsewhere.
	Holder   bool
	Peer     []*x509.Certificate
	ProofJKT string
	// UseOnce names the use a single-use token is claimed for (UseAccess,
	// UseDelegation); a second acceptance for the same use refuses it. ""
	// claims nothing.
	UseOnce string
}

// Uses a single-use token is claimed for: one access at its server (the
// admin API, introspection by its resource server), and at most one
// delegation to a downstream server by that server.
const (
	UseAccess     = "single-use"
	UseDelegation = "delegation"
)

// Reasons Accept refuses a token; each wraps ErrNotAccepted.
var (
	ErrNotAccepted  = errors.New("exchange: token not accepted")
	ErrTokenInvalid = fmt.Errorf("%w: not a valid access token of this broker", ErrNotAccepted)
	ErrTokenRevoked = fmt.Errorf("%w: revoked", ErrNotAccepted)
	ErrTokenUsed    = fmt.Errorf("%w: a single-use token used before", ErrNotAccepted)
	ErrTokenBinding = fmt.Errorf("%w: not presented by its holder", ErrNotAccepted)
	ErrTokenAud     = fmt.Errorf("%w: addressed to another audience", ErrNotAccepted)
)

// DefaultRevocationCacheFor is how long a revocation list answer for one
// token is reused: the bound on how late a revocation made at another
// replica reaches this one. A revocation made through this process (the
// revocation endpoint, the admin API) is seen at once.
const DefaultRevocationCacheFor = 500 * time.Millisecond

// AcceptorConfig configures an Acceptor.
type AcceptorConfig struct {
	// Tokens verifies signatures and claims; *issuer.Issuer is one.
	Tokens TokenInspector
	// Revocations is the revocation list the replicas share; nil: no
	// token is ever revoked.
	Revocations Revocations
	// SingleUse claims single-use tokens, once across replicas; nil:
	// single-use tokens are refused where UseOnce is asked.
	SingleUse attest.ReplayCache
	// CacheFor bounds the staleness of a revocation answer (0:
	// DefaultRevocationCacheFor; negative: never cached).
	CacheFor time.Duration
	// CacheSize bounds the cached answers (0: 10000).
	CacheSize int
	Clock     func() time.Time
}

// Acceptor accepts this broker's own access tokens. It is safe for
// concurrent use. It is also the Revocations every revocation goes
// through, so that a revocation made here is seen here at once.
type Acceptor struct {
	cfg   AcceptorConfig
	mu    sync.Mutex
	cache *lru.Cache[string, cachedRevocation] // by jti
}

type cachedRevocation struct {
	revoked bool
	until   time.Time
}

// NewAcceptor returns the acceptor of cfg.
func NewAcceptor(cfg AcceptorConfig) (*Acceptor, error) {
	if cfg.Tokens == nil {
		return nil, errors.New("exchange: an acceptor needs the issuer's tokens")
	}
	if cfg.CacheFor == 0 {
		cfg.CacheFor = DefaultRevocationCacheFor
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10000
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	cache, err := lru.New[string, cachedRevocation](cfg.CacheSize)
	if err != nil {
		return nil, err
	}
	return &Acceptor{cfg: cfg, cache: cache}, nil
}

// Accept verifies raw and applies every acceptance check want asks for. A
// refusal wraps ErrNotAccepted (and, for an invalid token,
// issuer.ErrInvalidToken); any other error is the store's, for which the
// caller answers 503.
func (a *Acceptor) Accept(ctx context.Context, raw string, want Acceptance) (issuer.VerifiedToken, error) {
	v, err := a.cfg.Tokens.Inspect(raw)
	if err != nil {
		if errors.Is(err, issuer.ErrNoSigningKey) {
			return issuer.VerifiedToken{}, err
		}
		return issuer.VerifiedToken{}, fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	}
	return a.AcceptVerified(ctx, v, want)
}

// AcceptVerified is Accept for a token whose signature and claims the
// caller has verified already (issuer.Inspect): every other check, without
// verifying the signature a second time.
func (a *Acceptor) AcceptVerified(ctx context.Context, v issuer.VerifiedToken, want Acceptance) (issuer.VerifiedToken, error) {
	if want.Audience != "" && v.Audience != want.Audience {
		return issuer.VerifiedToken{}, ErrTokenAud
	}
	if want.Holder {
		if err := v.Cnf.Holds(want.Peer, want.ProofJKT); err != nil {
			return issuer.VerifiedToken{}, fmt.Errorf("%w: %s", ErrTokenBinding, err)
		}
	}
	switch revoked, err := a.revoked(ctx, v); {
	case err != nil:
		return issuer.VerifiedToken{}, err
	case revoked:
		return issuer.VerifiedToken{}, ErrTokenRevoked
	}
	if want.UseOnce != "" && v.SingleUse {
		if a.cfg.SingleUse == nil {
			return issuer.VerifiedToken{}, fmt.Errorf("%w: single use cannot be enforced here", ErrTokenUsed)
		}
		switch err := a.cfg.SingleUse.Claim(ctx, want.UseOnce+":"+v.ID, v.ExpiresAt); {
		case errors.Is(err, attest.ErrReplayed):
			return issuer.VerifiedToken{}, ErrTokenUsed
		case err != nil:
			return issuer.VerifiedToken{}, err
		}
	}
	return v, nil
}

// revoked asks the revocation list about v, through the cache.
func (a *Acceptor) revoked(ctx context.Context, v issuer.VerifiedToken) (bool, error) {
	if a.cfg.Revocations == nil {
		return false, nil
	}
	now := a.cfg.Clock()
	if a.cfg.CacheFor > 0 {
		a.mu.Lock()
		c, ok := a.cache.Get(v.ID)
		a.mu.Unlock()
		if ok && now.Before(c.until) {
			return c.revoked, nil
		}
	}
	revoked, err := a.cfg.Revocations.Revoked(ctx, v.ID, v.Subject, v.ClientID, v.IssuedAt)
	if err != nil {
		return false, err
	}
	if a.cfg.CacheFor > 0 {
		until := now.Add(a.cfg.CacheFor)
		if revoked {
			until = v.ExpiresAt // a revocation is never taken back
		}
		a.mu.Lock()
		a.cache.Add(v.ID, cachedRevocation{revoked: revoked, until: until})
		a.mu.Unlock()
	}
	return revoked, nil
}

// Revoke implements Revocations: the list's, and this process forgets
// every answer it cached, so that the revocation applies here at once.
func (a *Acceptor) Revoke(ctx context.Context, kind, value string, at, until time.Time) error {
	if a.cfg.Revocations == nil {
		return errors.New("exchange: no revocation list")
	}
	err := a.cfg.Revocations.Revoke(ctx, kind, value, at, until)
	a.mu.Lock()
	a.cache.Purge()
	a.mu.Unlock()
	return err
}

// Revoked implements Revocations, uncached.
func (a *Acceptor) Revoked(ctx context.Context, jti, subject, clientID string, issuedAt time.Time) (bool, error) {
	if a.cfg.Revocations == nil {
		return false, nil
	}
	return a.cfg.Revocations.Revoked(ctx, jti, subject, clientID, issuedAt)
}
