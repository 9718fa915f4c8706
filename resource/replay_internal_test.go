package resource

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/attest"
)

// TestProofCacheRefusesRatherThanForgets (issue 32): a proof cache full of
// live proofs refuses a new one instead of forgetting a live one (which a
// captured proof could then be replayed past); expired ones make room.
func TestProofCacheRefusesRatherThanForgets(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	m := newMemoryReplay(2, func() time.Time { return now })
	ctx := context.Background()
	live := now.Add(150 * time.Second)
	for _, k := range []string{"a", "b"} {
		if err := m.Claim(ctx, k, live); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Claim(ctx, "c", live); !errors.Is(err, errProofCacheFull) {
		t.Fatalf("a third proof in a cache of two live ones: %v", err)
	}
	if err := m.Claim(ctx, "a", live); !errors.Is(err, attest.ErrReplayed) {
		t.Fatalf("the first proof again, when full: %v", err)
	}
	now = now.Add(151 * time.Second) // a and b expire
	if err := m.Claim(ctx, "c", now.Add(150*time.Second)); err != nil {
		t.Fatalf("a proof once the others expired: %v", err)
	}
	if err := m.Claim(ctx, "c", now.Add(150*time.Second)); !errors.Is(err, attest.ErrReplayed) {
		t.Fatalf("c again: %v", err)
	}
}
