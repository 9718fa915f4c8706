// Package consent is the per-client consent registry: a user's login never
// implies consent for a client. A user-delegated token is issued only while
// a consent for exactly that (user, client) covers its scopes and resource.
package consent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Consent is one user's consent to one MCP client.
type Consent struct {
	ID        string    `json:"id"`
	User      string    `json:"user"`      // the user's subject at their identity provider
	Provider  string    `json:"provider"`  // the provider that vouches for the user
	ClientID  string    `json:"client_id"` // the MCP client the user consented to
	Scopes    []string  `json:"scopes"`
	Resources []string  `json:"resources"` // canonical resource URIs
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Active reports whether c is in force at now.
func (c Consent) Active(now time.Time) bool {
	return c.RevokedAt.IsZero() && now.Before(c.ExpiresAt)
}

// Covers reports whether c allows scopes at resource.
func (c Consent) Covers(scopes []string, resource string) bool {
	if !slices.Contains(c.Resources, resource) {
		return false
	}
	for _, s := range scopes {
		if !slices.Contains(c.Scopes, s) {
			return false
		}
	}
	return true
}

// Errors.
var (
	ErrNotFound  = errors.New("consent: no such consent")
	ErrNoConsent = errors.New("consent: no active consent")
)

// Store keeps consents. It must be safe for concurrent use, by several
// processes sharing it: a revocation is seen by the next Consents call of
// every process.
type Store interface {
	// GrantConsent stores c (its ID and CreatedAt are set by the store).
	GrantConsent(ctx context.Context, c Consent) (Consent, error)
	// Consents lists the consents of (provider, user, client); an empty
	// argument matches any.
	Consents(ctx context.Context, provider, user, clientID string) ([]Consent, error)
	// RevokeConsent marks a consent revoked at the store's time; a store
	// that keeps refresh tokens revokes those the consent allowed too.
	RevokeConsent(ctx context.Context, id string) error
}

// Check returns nil when an active consent of (provider, user) for exactly
// clientID covers scopes at resource at now, ErrNoConsent when there is
// none, or the store's error.
func Check(ctx context.Context, s Store, provider, user, clientID string, scopes []string, resource string, now time.Time) error {
	cs, err := s.Consents(ctx, provider, user, clientID)
	if err != nil {
		return fmt.Errorf("consent: read consents: %w", err)
	}
	for _, c := range cs {
		if c.Provider == provider && c.User == user && c.ClientID == clientID && c.Active(now) && c.Covers(scopes, resource) {
			return nil
		}
	}
	return ErrNoConsent
}

// Validate checks a consent before it is stored.
func Validate(c Consent, now time.Time) error {
	var errs []error
	if c.User == "" {
		errs = append(errs, errors.New("user: required"))
	}
	if c.Provider == "" {
		errs = append(errs, errors.New("provider: required"))
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("client_id: required"))
	}
	if len(c.Resources) == 0 {
		errs = append(errs, errors.New("resources: at least one is required"))
	}
	if !c.ExpiresAt.After(now) {
		errs = append(errs, errors.New("expires_at: must be in the future"))
	}
	if c.ExpiresAt.After(now.Add(366 * 24 * time.Hour)) {
		errs = append(errs, errors.New("expires_at: at most a year ahead"))
	}
	return errors.Join(errs...)
}
