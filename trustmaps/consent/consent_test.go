package consent_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/trustmaps/consent"
)

func TestValidate(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	err := consent.Validate(consent.Consent{ExpiresAt: now}, now)
	for _, want := range []string{"user: required", "provider: required", "client_id: required", "resources: at least one", "expires_at: must be in the future"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %v lacks %q", err, want)
		}
	}
	if err := consent.Validate(consent.Consent{User: "u", Provider: "p", ClientID: "c", Resources: []string{"https://a.example"}, ExpiresAt: now.Add(2 * 366 * 24 * time.Hour)}, now); err == nil || !strings.Contains(err.Error(), "at most a year") {
		t.Errorf("two-year consent: %v", err)
	}
	if err := consent.Validate(consent.Consent{User: "u", Provider: "p", ClientID: "c", Resources: []string{"https://a.example"}, ExpiresAt: now.Add(time.Hour)}, now); err != nil {
		t.Errorf("valid consent: %v", err)
	}
}

// everything is a store that ignores the filters: Check must not rely on
// the store to match the user and the client.
type everything []consent.Consent

func (e everything) GrantConsent(context.Context, consent.Consent) (consent.Consent, error) {
	return consent.Consent{}, nil
}
func (e everything) Consents(context.Context, string, string, string) ([]consent.Consent, error) {
	return e, nil
}
func (e everything) RevokeConsent(context.Context, string) error { return nil }

func TestCheckMatchesExactly(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s := everything{{User: "alice", Provider: "corp", ClientID: "mail-agent", Scopes: []string{"mail:read"},
		Resources: []string{"https://mail.example.com/mcp"}, ExpiresAt: now.Add(time.Hour)}}
	ctx := context.Background()
	if err := consent.Check(ctx, s, "corp", "alice", "mail-agent", []string{"mail:read"}, "https://mail.example.com/mcp", now); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][3]string{
		"other client": {"corp", "alice", "drive-agent"}, "other user": {"corp", "bob", "mail-agent"}, "other provider": {"social", "alice", "mail-agent"},
	} {
		if err := consent.Check(ctx, s, args[0], args[1], args[2], nil, "https://mail.example.com/mcp", now); !errors.Is(err, consent.ErrNoConsent) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The right person and client, but a scope or a resource beyond it.
	for name, tc := range map[string]struct {
		scopes   []string
		resource string
	}{
		"a scope beyond it":              {[]string{"mail:read", "mail:send"}, "https://mail.example.com/mcp"},
		"another resource":               {[]string{"mail:read"}, "https://drive.example.com/mcp"},
		"another resource, no scope":     {nil, "https://drive.example.com/mcp"},
		"the resource with a slash more": {[]string{"mail:read"}, "https://mail.example.com/mcp/"},
	} {
		if err := consent.Check(ctx, s, "corp", "alice", "mail-agent", tc.scopes, tc.resource, now); !errors.Is(err, consent.ErrNoConsent) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestCheckActiveOnly: an expired or revoked consent covers nothing,
// though it names the user, client, scopes and resource.
func TestCheckActiveOnly(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	base := consent.Consent{User: "alice", Provider: "corp", ClientID: "mail-agent", Scopes: []string{"mail:read"},
		Resources: []string{"https://mail.example.com/mcp"}, ExpiresAt: now.Add(time.Hour)}
	expired, revoked, expiresNow := base, base, base
	expired.ExpiresAt = now.Add(-time.Second)
	revoked.RevokedAt = now.Add(-time.Minute)
	expiresNow.ExpiresAt = now
	for name, c := range map[string]consent.Consent{"expired": expired, "revoked": revoked, "expiring at this instant": expiresNow} {
		if c.Active(now) {
			t.Errorf("%s: Active", name)
		}
		err := consent.Check(context.Background(), everything{c}, "corp", "alice", "mail-agent", []string{"mail:read"}, "https://mail.example.com/mcp", now)
		if !errors.Is(err, consent.ErrNoConsent) {
			t.Errorf("%s: Check = %v, want ErrNoConsent", name, err)
		}
	}
	if !base.Active(now) {
		t.Error("an unexpired, unrevoked consent is not active")
	}
}
