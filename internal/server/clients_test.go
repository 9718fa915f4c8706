package server

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// TestUnusedRegistrationsExpire (issue 32): a dynamic registration that
// got no token within unused_expiry is removed from the store and from
// every replica's registry; one that got a token stays, even on a replica
// that read it before its use; an administrator's client never expires.
func TestUnusedRegistrationsExpire(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "mcpsts.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	log := slog.New(slog.DiscardHandler)
	one, err := newStoreClients(ctx, st.Clients(), log, clock, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []exchange.Client{
		{ID: "dcr-used", GrantTypes: []string{exchange.GrantAuthorizationCode}, RedirectURIs: []string{"https://a.example/cb"}, RegisteredAt: now.Unix()},
		{ID: "dcr-idle", GrantTypes: []string{exchange.GrantAuthorizationCode}, RedirectURIs: []string{"https://b.example/cb"}, RegisteredAt: now.Unix()},
		{ID: "desktop", GrantTypes: []string{exchange.GrantAuthorizationCode}, RedirectURIs: []string{"https://c.example/cb"}},
	} {
		if err := one.RegisterClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	// The other replica reads them before the use.
	two, err := newStoreClients(ctx, st.Clients(), log, clock, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if one.DynamicClients() != 2 || two.DynamicClients() != 2 {
		t.Fatalf("dynamic clients %d and %d, want 2", one.DynamicClients(), two.DynamicClients())
	}
	mu.Lock()
	now = now.Add(10 * time.Minute)
	mu.Unlock()
	one.ClientUsed(ctx, "dcr-used")
	rec, err := st.Clients().Record(ctx, "dcr-used")
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := exchange.ParseClient(rec.Document); c.FirstUsedAt != now.Unix() {
		t.Fatalf("first use recorded as %d, want %d", c.FirstUsedAt, now.Unix())
	}
	one.ClientUsed(ctx, "dcr-used") // once only: no second write
	if again, _ := st.Clients().Record(ctx, "dcr-used"); again.Version != rec.Version {
		t.Fatalf("a second use wrote again: version %d, was %d", again.Version, rec.Version)
	}

	// Not yet past the expiry: nothing goes.
	two.expireUnused(ctx)
	if two.DynamicClients() != 2 {
		t.Fatal("removed before unused_expiry")
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	two.expireUnused(ctx)
	if _, err := st.Clients().Record(ctx, "dcr-idle"); !errors.Is(err, trustmaps.ErrNotFound) {
		t.Fatalf("the unused registration: %v, want it removed", err)
	}
	for id, want := range map[string]bool{"dcr-used": true, "dcr-idle": false, "desktop": true} {
		if _, err := st.Clients().Record(ctx, id); (err == nil) != want {
			t.Errorf("%s in the store: %v, want kept %v", id, err, want)
		}
		if _, ok, _ := two.Client(ctx, id); ok != want {
			t.Errorf("%s in the replica's registry: %v, want %v", id, ok, want)
		}
	}
	if two.DynamicClients() != 1 {
		t.Fatalf("%d dynamic clients after the expiry, want 1", two.DynamicClients())
	}
	// The first replica learns at its next reload.
	if err := one.reload(ctx); err != nil || one.DynamicClients() != 1 {
		t.Fatalf("after a reload: %d dynamic clients, %v", one.DynamicClients(), err)
	}
}
