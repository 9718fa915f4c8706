package attest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/replaytest"
)

type fixed attest.Identity

func (f fixed) Attest(context.Context, attest.Evidence) (attest.Identity, error) {
	return attest.Identity(f), nil
}

// memCache is a minimal ReplayCache; it must pass the suite to be trusted.
type memCache struct {
	now  func() time.Time
	held map[string]time.Time
}

func (m *memCache) Claim(ctx context.Context, key string, until time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if key == "" || !until.After(m.now()) {
		return errors.New("bad claim")
	}
	if u, ok := m.held[key]; ok && u.After(m.now()) {
		return attest.ErrReplayed
	}
	m.held[key] = until
	return nil
}

type lockedCache struct {
	mu chan struct{}
	*memCache
}

func (l lockedCache) Claim(ctx context.Context, key string, until time.Time) error {
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.memCache.Claim(ctx, key, until)
}

func TestMemCacheConformance(t *testing.T) {
	replaytest.Run(t, func(t *testing.T, c *replaytest.Clock) attest.ReplayCache {
		return lockedCache{make(chan struct{}, 1), &memCache{now: c.Now, held: map[string]time.Time{}}}
	})
}

func TestSingleUse(t *testing.T) {
	now := time.Now()
	cache := &memCache{now: func() time.Time { return now }, held: map[string]time.Time{}}
	id := fixed{Provider: "k8s", ReplayKey: "jti-1", Expiry: now.Add(time.Minute)}
	a := attest.SingleUse(id, cache)
	if _, err := a.Attest(context.Background(), attest.Evidence{}); err != nil {
		t.Fatal(err)
	}
	_, err := a.Attest(context.Background(), attest.Evidence{})
	if !errors.Is(err, attest.ErrReplayed) || attest.ReasonOf(err) != "token_replayed" {
		t.Fatalf("second use = %v, want ErrReplayed with reason token_replayed", err)
	}
	reusable := attest.SingleUse(fixed{Provider: "k8s"}, cache)
	for range 2 {
		if _, err := reusable.Attest(context.Background(), attest.Evidence{}); err != nil {
			t.Fatalf("identity without a replay key: %v", err)
		}
	}
	broken := attest.SingleUse(fixed{ReplayKey: "k", Expiry: now.Add(-time.Second)}, cache)
	if _, err := broken.Attest(context.Background(), attest.Evidence{}); !errors.Is(err, attest.ErrUnavailable) {
		t.Fatalf("cache failure = %v, want ErrUnavailable", err)
	}
}
