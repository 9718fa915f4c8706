package issuer_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/internal/store/storetest"
	"github.com/mcpsts/mcpsts/issuer"
)

// TestReplicasRotateOnce runs two issuers, each with its own connection to
// one shared database, as two replicas would: when rotation falls due and
// both try at once, exactly one key is added, and both then publish and sign
// with the same keys.
func TestReplicasRotateOnce(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			url := b.NewURL(t)
			clk := &clock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
			kek := newKEK(t)
			replicas := make([]*issuer.Issuer, 2)
			for i := range replicas {
				st, err := store.Open(ctx, url, store.WithClock(clk.Now))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				replicas[i], err = issuer.New(issuer.Config{
					Issuer: iss, Store: st, Clock: clk.Now,
					Local: &issuer.LocalKeys{KEK: kek, Algorithm: issuer.ES256},
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			// Both start on an empty store at once: one first key.
			var wg sync.WaitGroup
			errs := make([]error, len(replicas))
			for i, r := range replicas {
				wg.Add(1)
				go func() { defer wg.Done(); errs[i] = r.Start(ctx) }()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			keys, _ := replicas[0].Keys(ctx)
			if len(keys) != 1 {
				t.Fatalf("%d keys after two concurrent starts, want 1", len(keys))
			}

			for round := range 3 {
				clk.Advance(24 * time.Hour)
				results := make([]issuer.RotationResult, len(replicas))
				for i, r := range replicas {
					wg.Add(1)
					go func() { defer wg.Done(); results[i], errs[i] = r.Rotate(ctx, false) }()
				}
				wg.Wait()
				added := 0
				for i := range replicas {
					if errs[i] != nil {
						t.Fatal(errs[i])
					}
					if results[i].Added != "" {
						added++
					}
				}
				if added != 1 {
					t.Fatalf("round %d: %d replicas added a key, want exactly 1", round, added)
				}
				clk.Advance(issuer.PublishLead)
				var kids []string
				for _, r := range replicas {
					if err := r.Refresh(ctx); err != nil {
						t.Fatal(err)
					}
					tok, err := r.Mint(ctx, grant())
					if err != nil {
						t.Fatal(err)
					}
					kids = append(kids, tok.KeyID)
				}
				if kids[0] != kids[1] {
					t.Fatalf("round %d: replicas sign with %v", round, kids)
				}
			}
		})
	}
}

// TestReplicaPicksUpNewKeys: a running replica (Run) publishes a key that
// another replica added within its refresh interval.
func TestReplicaPicksUpNewKeys(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			url := b.NewURL(t)
			kek := newKEK(t)
			replicas := make([]*issuer.Issuer, 2)
			for i := range replicas {
				st, err := store.Open(ctx, url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				replicas[i], err = issuer.New(issuer.Config{
					Issuer: iss, Store: st, RefreshInterval: 20 * time.Millisecond,
					Local: &issuer.LocalKeys{KEK: kek, Algorithm: issuer.ES256},
				})
				if err != nil {
					t.Fatal(err)
				}
				if err := replicas[i].Start(ctx); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan struct{})
			go func() { replicas[1].Run(ctx); close(done) }()
			res, err := replicas[0].Rotate(ctx, true)
			if err != nil || res.Added == "" {
				t.Fatalf("Rotate = %+v, %v", res, err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				set := jwks(t, replicas[1])
				if len(set.Key(res.Added)) == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the running replica did not publish the new key within 10s (refresh every 20ms)")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if tok, err := replicas[1].Mint(ctx, grant()); err != nil || tok.KeyID == res.Added {
				t.Fatalf("Mint = %v, %v: the new key is pending and must not sign", tok.KeyID, err)
			}
			cancel()
			<-done
		})
	}
}
