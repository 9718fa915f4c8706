// Package authorizetest is the conformance suite for authorize.Store.
package authorizetest

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/exchange/authorize"
)

// Run runs the suite; newStore returns a fresh store. Every store of one
// call shares nothing with another's.
// Stores is what a backend implements: codes and refresh tokens, and flows.
type Stores interface {
	authorize.Store
	authorize.FlowStore
}

func Run(t *testing.T, newStore func(t *testing.T) Stores) {
	ctx := context.Background()
	// In the future, so that no store purges the flows as expired.
	exp := time.Now().UTC().Truncate(time.Second).Add(time.Hour)
	code := authorize.Code{Hash: authorize.Hash("code-1"), ClientID: "https://app.example.com/client.json", RedirectURI: "http://127.0.0.1:8080/cb",
		Challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", Resource: "https://mail.example.com/mcp", Scopes: []string{"mail:read", "offline_access"},
		Provider: "corp", Subject: "alice", TTL: 10 * time.Minute, Family: "fam-1", JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", ExpiresAt: exp,
		Person: authorize.Person{Issuer: "https://idp.example.com", Attributes: map[string]any{"groups": []any{"staff"}, "email_verified": true}}}
	refresh := func(secret, family string) authorize.Refresh {
		return authorize.Refresh{Hash: authorize.Hash(secret), Family: family, ClientID: code.ClientID, Resource: code.Resource,
			Scopes: []string{"mail:read", "offline_access"}, Provider: "corp", Subject: "alice", TTL: 10 * time.Minute, JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", ExpiresAt: exp.Add(24 * time.Hour),
			Person: code.Person, FamilyExpiresAt: exp.Add(30 * 24 * time.Hour)}
	}

	t.Run("a code is redeemed once", func(t *testing.T) {
		s := newStore(t)
		if err := s.SaveCode(ctx, code); err != nil {
			t.Fatal(err)
		}
		got, err := s.RedeemCode(ctx, code.Hash)
		if err != nil || !reflect.DeepEqual(got, code) {
			t.Fatalf("RedeemCode = %+v, %v\nwant %+v", got, err, code)
		}
		again, err := s.RedeemCode(ctx, code.Hash)
		if !errors.Is(err, authorize.ErrReused) || again.Family != "fam-1" {
			t.Fatalf("second RedeemCode = %+v, %v; want its grant and ErrReused", again, err)
		}
		if _, err := s.RedeemCode(ctx, authorize.Hash("unknown")); !errors.Is(err, authorize.ErrNotFound) {
			t.Fatalf("unknown code: %v", err)
		}
		if err := s.SaveCode(ctx, code); err == nil {
			t.Fatal("a code saved twice")
		}
		// The access token of the first redemption comes back with a
		// reuse, for it to be revoked.
		at := exp.Add(15 * time.Minute)
		if err := s.RecordAccess(ctx, code.Hash, "jti-1", at); err != nil {
			t.Fatal(err)
		}
		if again, err := s.RedeemCode(ctx, code.Hash); !errors.Is(err, authorize.ErrReused) || again.AccessJTI != "jti-1" || !again.AccessExpiresAt.Equal(at) {
			t.Fatalf("reuse after RecordAccess = %+v, %v", again, err)
		}
	})

	t.Run("a rotation never goes past the family's end", func(t *testing.T) {
		s := newStore(t)
		r := refresh("rt-end", "fam-end")
		r.FamilyExpiresAt = exp.Add(time.Hour)
		if err := s.SaveRefresh(ctx, r); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RotateRefresh(ctx, r.Hash, authorize.Hash("rt-end-2"), exp.Add(48*time.Hour)); err != nil {
			t.Fatal(err)
		}
		next, err := s.LookupRefresh(ctx, authorize.Hash("rt-end-2"))
		if err != nil || !next.ExpiresAt.Equal(r.FamilyExpiresAt) || !next.FamilyExpiresAt.Equal(r.FamilyExpiresAt) || !reflect.DeepEqual(next.Person, r.Person) {
			t.Fatalf("successor = %+v, %v; want it to end with the family at %v", next, err, r.FamilyExpiresAt)
		}
	})

	t.Run("concurrent redemptions: one wins", func(t *testing.T) {
		s := newStore(t)
		c := code
		c.Hash = authorize.Hash("code-race")
		if err := s.SaveCode(ctx, c); err != nil {
			t.Fatal(err)
		}
		var wins, reused atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch _, err := s.RedeemCode(ctx, c.Hash); {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, authorize.ErrReused):
					reused.Add(1)
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 || reused.Load() != 7 {
			t.Fatalf("%d redemptions won, %d reused; want 1 and 7", wins.Load(), reused.Load())
		}
	})

	t.Run("refresh tokens rotate; reuse is reported; a revoked family refreshes no more", func(t *testing.T) {
		s := newStore(t)
		r1 := refresh("rt-1", "fam-1")
		h2, h3 := authorize.Hash("rt-2"), authorize.Hash("rt-3")
		if err := s.SaveRefresh(ctx, r1); err != nil {
			t.Fatal(err)
		}
		later := exp.Add(48 * time.Hour)
		got, err := s.RotateRefresh(ctx, r1.Hash, h2, later)
		if err != nil || !reflect.DeepEqual(got, r1) {
			t.Fatalf("RotateRefresh = %+v, %v\nwant %+v", got, err, r1)
		}
		if _, err := s.LookupRefresh(ctx, r1.Hash); !errors.Is(err, authorize.ErrNotFound) {
			t.Fatalf("LookupRefresh of a used token = %v, want ErrNotFound", err)
		}
		if got, err := s.LookupRefresh(ctx, h2); err != nil || got.Family != "fam-1" {
			t.Fatalf("LookupRefresh of its successor = %+v, %v", got, err)
		}
		if got, err := s.RotateRefresh(ctx, r1.Hash, h3, later); !errors.Is(err, authorize.ErrReused) || got.Family != "fam-1" {
			t.Fatalf("rotating a used token = %+v, %v; want ErrReused", got, err)
		}
		// The successor is the same grant, with its own expiry.
		want := r1
		want.Hash, want.ExpiresAt = h2, later
		if got, err := s.RotateRefresh(ctx, h2, authorize.Hash("rt-2b"), later); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("the successor = %+v, %v\nwant %+v", got, err, want)
		}
		h2 = authorize.Hash("rt-2b")
		other := refresh("rt-other", "fam-2")
		if err := s.SaveRefresh(ctx, other); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeFamily(ctx, "fam-1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RotateRefresh(ctx, h2, h3, later); !errors.Is(err, authorize.ErrNotFound) {
			t.Fatalf("rotating a token of a revoked family = %v, want ErrNotFound", err)
		}
		if _, err := s.RotateRefresh(ctx, authorize.Hash("unknown"), h3, later); !errors.Is(err, authorize.ErrNotFound) {
			t.Fatalf("unknown refresh token: %v", err)
		}
		if _, err := s.RotateRefresh(ctx, other.Hash, authorize.Hash("rt-other-2"), later); err != nil {
			t.Fatalf("another family was revoked too: %v", err)
		}
	})

	t.Run("concurrent rotations: one wins", func(t *testing.T) {
		s := newStore(t)
		r := refresh("rt-race", "fam-race")
		if err := s.SaveRefresh(ctx, r); err != nil {
			t.Fatal(err)
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.RotateRefresh(ctx, r.Hash, authorize.Hash("rt-race-next-"+string(rune('a'+i))), exp); err == nil {
					wins.Add(1)
				} else if !errors.Is(err, authorize.ErrReused) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d rotations won, want 1", wins.Load())
		}
	})

	t.Run("a refresh token is looked up without being claimed", func(t *testing.T) {
		s := newStore(t)
		r := refresh("rt-look", "fam-look")
		if err := s.SaveRefresh(ctx, r); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if got, err := s.LookupRefresh(ctx, r.Hash); err != nil || !reflect.DeepEqual(got, r) {
				t.Fatalf("LookupRefresh = %+v, %v", got, err)
			}
		}
		if err := s.RevokeFamily(ctx, "fam-look"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.LookupRefresh(ctx, r.Hash); !errors.Is(err, authorize.ErrNotFound) {
			t.Fatalf("a revoked refresh token: %v", err)
		}
	})

	t.Run("a flow is taken once", func(t *testing.T) {
		s := newStore(t)
		f := authorize.Flow{Purpose: authorize.PurposeAuthorize, Browser: authorize.Hash("cookie"), ClientID: code.ClientID, RedirectURI: code.RedirectURI,
			State: "xyz", Challenge: code.Challenge, Resource: code.Resource, Scopes: []string{"mail:read"}, Offline: true, Nonce: "n", Verifier: "v",
			Provider: "corp", Subject: "alice", Granted: []string{"mail:read"}, TTL: 10 * time.Minute, ExpiresAt: exp}
		if err := s.SaveFlow(ctx, authorize.Hash("k1"), f); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveFlow(ctx, authorize.Hash("k1"), f); err == nil {
			t.Fatal("a flow key saved twice")
		}
		// A look leaves it to be taken, as often as asked.
		for range 2 {
			if got, err := s.PeekFlow(ctx, authorize.Hash("k1")); err != nil || !reflect.DeepEqual(got, f) {
				t.Fatalf("PeekFlow = %+v, %v\nwant %+v", got, err, f)
			}
		}
		got, err := s.TakeFlow(ctx, authorize.Hash("k1"))
		if err != nil || !reflect.DeepEqual(got, f) {
			t.Fatalf("TakeFlow = %+v, %v\nwant %+v", got, err, f)
		}
		if _, err := s.TakeFlow(ctx, authorize.Hash("k1")); !errors.Is(err, authorize.ErrReused) {
			t.Fatalf("second TakeFlow: %v, want ErrReused", err)
		}
		if _, err := s.PeekFlow(ctx, authorize.Hash("k1")); !errors.Is(err, authorize.ErrReused) {
			t.Fatalf("PeekFlow of a taken flow: %v, want ErrReused", err)
		}
		if _, err := s.PeekFlow(ctx, authorize.Hash("k2")); !errors.Is(err, authorize.ErrNotFound) {
			t.Fatalf("PeekFlow of an unknown flow: %v, want ErrNotFound", err)
		}
		if _, err := s.TakeFlow(ctx, authorize.Hash("k2")); !errors.Is(err, authorize.ErrNotFound) {
			t.Fatalf("unknown flow: %v, want ErrNotFound", err)
		}
	})

	t.Run("concurrent takes: one wins", func(t *testing.T) {
		s := newStore(t)
		if err := s.SaveFlow(ctx, authorize.Hash("race"), authorize.Flow{Purpose: authorize.PurposeConsents, ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.TakeFlow(ctx, authorize.Hash("race")); err == nil {
					wins.Add(1)
				} else if !errors.Is(err, authorize.ErrReused) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d takes won, want 1", wins.Load())
		}
	})

	t.Run("revoking a user's grants to a client", func(t *testing.T) {
		s := newStore(t)
		mine, other := refresh("rt-mine", "fam-mine"), refresh("rt-other-client", "fam-other")
		other.ClientID = "another-client"
		for _, r := range []authorize.Refresh{mine, other} {
			if err := s.SaveRefresh(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.RevokeGrants(ctx, "corp", "alice", mine.ClientID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RotateRefresh(ctx, mine.Hash, authorize.Hash("rt-mine-2"), exp); !errors.Is(err, authorize.ErrNotFound) {
			t.Fatalf("revoked grant rotated: %v", err)
		}
		if _, err := s.RotateRefresh(ctx, other.Hash, authorize.Hash("rt-other-2"), exp); err != nil {
			t.Fatalf("another client's grant was revoked too: %v", err)
		}
	})
}
