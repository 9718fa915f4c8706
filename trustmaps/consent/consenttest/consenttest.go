// Package consenttest is the conformance suite for consent.Store.
package consenttest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/trustmaps/consent"
)

// Run runs the suite; newStore returns a fresh store reading now.
func Run(t *testing.T, newStore func(t *testing.T, now func() time.Time) consent.Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	base := consent.Consent{User: "alice", Provider: "corp", ClientID: "mail-agent", Scopes: []string{"mail:read"},
		Resources: []string{"https://mail.example.com/mcp"}, ExpiresAt: t0.Add(24 * time.Hour)}
	t.Run("grant, list, check", func(t *testing.T) {
		var mu sync.Mutex
		now := t0
		s := newStore(t, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
		c, err := s.GrantConsent(ctx, base)
		if err != nil || c.ID == "" || !c.CreatedAt.Equal(t0) {
			t.Fatalf("GrantConsent = %+v, %v", c, err)
		}
		other := base
		other.ClientID = "calendar-agent"
		s.GrantConsent(ctx, other)
		list, err := s.Consents(ctx, "corp", "alice", "mail-agent")
		if err != nil || len(list) != 1 || list[0].ID != c.ID || list[0].Scopes[0] != "mail:read" || !list[0].ExpiresAt.Equal(base.ExpiresAt) {
			t.Fatalf("Consents = %+v, %v", list, err)
		}
		if all, _ := s.Consents(ctx, "", "", ""); len(all) != 2 {
			t.Fatalf("all consents = %d, want 2", len(all))
		}
		check := func(client string, scopes []string, res string) error {
			return consent.Check(ctx, s, "corp", "alice", client, scopes, res, now)
		}
		if err := check("mail-agent", []string{"mail:read"}, "https://mail.example.com/mcp"); err != nil {
			t.Fatalf("Check = %v", err)
		}
		for name, err := range map[string]error{
			"other client":   check("drive-agent", nil, "https://mail.example.com/mcp"),
			"wider scope":    check("mail-agent", []string{"mail:send"}, "https://mail.example.com/mcp"),
			"other resource": check("mail-agent", nil, "https://drive.example.com/mcp"),
			"other user":     consent.Check(ctx, s, "corp", "bob", "mail-agent", nil, "https://mail.example.com/mcp", now),
			"other provider": consent.Check(ctx, s, "social", "alice", "mail-agent", nil, "https://mail.example.com/mcp", now),
		} {
			if !errors.Is(err, consent.ErrNoConsent) {
				t.Errorf("%s: Check = %v, want ErrNoConsent", name, err)
			}
		}
		if err := consent.Check(ctx, s, "corp", "alice", "mail-agent", nil, "https://mail.example.com/mcp", t0.Add(25*time.Hour)); !errors.Is(err, consent.ErrNoConsent) {
			t.Errorf("expired consent: %v", err)
		}
		if err := s.RevokeConsent(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		if err := check("mail-agent", nil, "https://mail.example.com/mcp"); !errors.Is(err, consent.ErrNoConsent) {
			t.Fatalf("revoked consent still checks: %v", err)
		}
		list, _ = s.Consents(ctx, "corp", "alice", "mail-agent")
		if len(list) != 1 || list[0].RevokedAt.IsZero() {
			t.Fatalf("revoked consent = %+v", list)
		}
		if err := s.RevokeConsent(ctx, "no-such-id"); !errors.Is(err, consent.ErrNotFound) {
			t.Fatalf("revoke unknown = %v", err)
		}
	})
}
