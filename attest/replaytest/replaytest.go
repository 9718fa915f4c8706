// Package replaytest is the conformance suite for attest.ReplayCache. Every
// implementation runs it, so that they all keep the same contract.
package replaytest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/attest"
)

// Clock is a manual clock for the suite; the factory must make the cache read
// the time from it.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Factory returns a fresh, empty cache that reads the time from clock.
type Factory func(t *testing.T, clock *Clock) attest.ReplayCache

// Run runs the whole suite against caches made by newCache.
func Run(t *testing.T, newCache Factory) {
	start := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		run  func(t *testing.T, c attest.ReplayCache, clock *Clock)
	}{
		{"second claim is a replay", func(t *testing.T, c attest.ReplayCache, clock *Clock) {
			ctx := context.Background()
			mustClaim(t, c, "jti-1", clock.Now().Add(time.Minute))
			err := c.Claim(ctx, "jti-1", clock.Now().Add(time.Minute))
			if !errors.Is(err, attest.ErrReplayed) {
				t.Fatalf("second Claim = %v, want ErrReplayed", err)
			}
		}},
		{"keys are independent", func(t *testing.T, c attest.ReplayCache, clock *Clock) {
			mustClaim(t, c, "a", clock.Now().Add(time.Minute))
			mustClaim(t, c, "b", clock.Now().Add(time.Minute))
			mustClaim(t, c, "A", clock.Now().Add(time.Minute))
		}},
		{"expired claim frees the key", func(t *testing.T, c attest.ReplayCache, clock *Clock) {
			mustClaim(t, c, "k", clock.Now().Add(time.Minute))
			clock.Advance(time.Minute + time.Second)
			mustClaim(t, c, "k", clock.Now().Add(time.Minute))
			err := c.Claim(context.Background(), "k", clock.Now().Add(time.Hour))
			if !errors.Is(err, attest.ErrReplayed) {
				t.Fatalf("Claim after re-claim = %v, want ErrReplayed", err)
			}
		}},
		{"claim is held until exactly its time", func(t *testing.T, c attest.ReplayCache, clock *Clock) {
			until := clock.Now().Add(time.Minute)
			mustClaim(t, c, "k", until)
			clock.Advance(time.Minute - time.Second)
			if err := c.Claim(context.Background(), "k", until.Add(time.Hour)); !errors.Is(err, attest.ErrReplayed) {
				t.Fatalf("Claim one second before expiry = %v, want ErrReplayed", err)
			}
		}},
		{"a refused claim does not extend the hold", func(t *testing.T, c attest.ReplayCache, clock *Clock) {
			mustClaim(t, c, "k", clock.Now().Add(time.Minute))
			if err := c.Claim(context.Background(), "k", clock.Now().Add(time.Hour)); !errors.Is(err, attest.ErrReplayed) {
				t.Fatalf("second Claim = %v, want ErrReplayed", err)
			}
			clock.Advance(2 * time.Minute)
			mustClaim(t, c, "k", clock.Now().Add(time.Minute))
		}},
		{"empty key is an error", func(t *testing.T, c attest.ReplayCache, clock *Clock) {
			err := c.Claim(context.Background(), "", clock.Now().Add(time.Minute))
			if err == nil || errors.Is(err, attest.ErrReplayed) {
				t.Fatalf("Claim(\"\") = %v, want a non-replay error", err)
			}
		}},
		{"past expiry is an error", func(t *testing.T, c attest.ReplayCache, clock *Clock) {
			for _, until := range []time.Time{clock.Now(), clock.Now().Add(-time.Second), {}} {
				err := c.Claim(context.Background(), "k", until)
				if err == nil || errors.Is(err, attest.ErrReplayed) {
					t.Fatalf("Claim(until=%v) = %v, want a non-replay error", until, err)
				}
			}
			mustClaim(t, c, "k", clock.Now().Add(time.Minute))
		}},
		{"long and binary keys", func(t *testing.T, c attest.ReplayCache, clock *Clock) {
			long := strings.Repeat("x", 64<<10)
			mustClaim(t, c, long, clock.Now().Add(time.Minute))
			mustClaim(t, c, long+"y", clock.Now().Add(time.Minute))
			mustClaim(t, c, "\x00\xff'\";--", clock.Now().Add(time.Minute))
			if err := c.Claim(context.Background(), long, clock.Now().Add(time.Minute)); !errors.Is(err, attest.ErrReplayed) {
				t.Fatalf("second Claim of long key = %v, want ErrReplayed", err)
			}
		}},
		{"canceled context is an error", func(t *testing.T, c attest.ReplayCache, clock *Clock) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err := c.Claim(ctx, "k", clock.Now().Add(time.Minute))
			if err == nil || errors.Is(err, attest.ErrReplayed) {
				t.Fatalf("Claim with canceled context = %v, want a non-replay error", err)
			}
		}},
		{"concurrent claims: exactly one wins", func(t *testing.T, c attest.ReplayCache, clock *Clock) {
			const n = 16
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = c.Claim(context.Background(), "race", clock.Now().Add(time.Minute))
				}()
			}
			wg.Wait()
			won := 0
			for _, err := range errs {
				switch {
				case err == nil:
					won++
				case errors.Is(err, attest.ErrReplayed):
				default:
					t.Errorf("concurrent Claim: unexpected error %v", err)
				}
			}
			if won != 1 {
				t.Fatalf("%d concurrent claims succeeded, want exactly 1", won)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := NewClock(start)
			tt.run(t, newCache(t, clock), clock)
		})
	}
}

func mustClaim(t *testing.T, c attest.ReplayCache, key string, until time.Time) {
	t.Helper()
	if err := c.Claim(context.Background(), key, until); err != nil {
		t.Fatalf("Claim(%.20q) = %v, want nil", key, err)
	}
}
