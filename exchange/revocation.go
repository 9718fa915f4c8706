package exchange

import (
	"context"
	"time"
)

// Revocations is the list of revoked access tokens, kept in the store the
// replicas share, so that a revocation on one is seen by all at their next
// check.
type Revocations interface {
	// Revoke records a revocation: of one token (kind RevokeJTI, until
	// its expiry), or of every token of a subject or a client issued at or
	// before at (RevokeSubject, RevokeClient, until the longest lifetime
	// has passed).
	Revoke(ctx context.Context, kind, value string, at, until time.Time) error
	// Revoked reports whether a token is revoked.
	Revoked(ctx context.Context, jti, subject, clientID string, issuedAt time.Time) (bool, error)
}

// Kinds of revocation.
const (
	RevokeJTI     = "jti"
	RevokeSubject = "subject"
	RevokeClient  = "client"
)
