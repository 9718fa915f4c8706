package consent_test

import (
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
