package exchange

import (
	"context"
	"errors"
	"time"
)

// ErrReplayed is returned by ReplayCache.Claim when the key was already
// claimed and its claim has not yet expired.
var ErrReplayed = errors.New("exchange: replayed")

// ReplayCache makes evidence single-use: a key (a jti, a signed request's
// signature hash…) can be claimed once until a given time.
//
// Implementations must be safe for concurrent use, including by several
// processes sharing one backing store: of two concurrent claims of the same
// unexpired key exactly one succeeds. Claim returns nil when the key is now
// claimed by the caller, an error wrapping ErrReplayed when it is held by an
// earlier claim, and any other error when the cache could not decide (the
// caller must then refuse the evidence). A claim whose time has passed no
// longer blocks the key. Implementations must not keep the key itself in
// clear: it may be derived from a credential.
type ReplayCache interface {
	Claim(ctx context.Context, key string, until time.Time) error
}
