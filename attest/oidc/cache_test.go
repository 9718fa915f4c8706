package oidc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
)

func cachedEnv(t testing.TB) *env {
	t.Helper()
	e := newEnv(t, nil)
	v, err := oidc.NewVerifier(oidc.Options{Now: e.now, CacheEntries: 100},
		oidc.ProviderConfig{Keys: provider(t, e.is, "ci", e.now), Audiences: []string{brokerAud}})
	if err != nil {
		t.Fatal(err)
	}
	e.v = v
	return e
}

func TestVerifiedCache(t *testing.T) {
	e := cachedEnv(t)
	tok := e.is.Sign(e.claims(), nil)
	for i := range 3 {
		if _, err := e.attest(tok); err != nil {
			t.Fatalf("use %d: %v", i, err)
		}
	}
	// A cached token is still checked for time on every use.
	e.advance(11 * time.Minute)
	if _, err := e.attest(tok); attest.ReasonOf(err) != "token_expired" {
		t.Fatalf("expired cached token = %v, want token_expired", err)
	}

	// A cached token whose key rotates away is no longer accepted.
	e = cachedEnv(t)
	tok = e.is.Sign(e.claims(), nil)
	if _, err := e.attest(tok); err != nil {
		t.Fatal(err)
	}
	e.is.AddKey("ES256")
	e.is.DropOldKeys()
	e.advance(31 * time.Second)
	fresh := e.is.Sign(e.claims(), nil) // its unknown kid makes the provider refetch
	if _, err := e.attest(fresh); err != nil {
		t.Fatal(err)
	}
	if _, err := e.attest(tok); attest.ReasonOf(err) != "unknown_key" {
		t.Fatalf("cached token after its key rotated away = %v, want unknown_key", err)
	}

	// A tampered token is not a cache hit.
	e = cachedEnv(t)
	tok = e.is.Sign(e.claims(), nil)
	e.attest(tok)
	if _, err := e.attest(tok[:len(tok)-2] + "AA"); err == nil {
		t.Fatal("a tampered token was accepted")
	}
}

func TestSingleUseTokensAreNotCached(t *testing.T) {
	e := newEnv(t, nil)
	v, _ := oidc.NewVerifier(oidc.Options{Now: e.now, CacheEntries: 100},
		oidc.ProviderConfig{Keys: provider(t, e.is, "ci", e.now), Audiences: []string{brokerAud}, SingleUse: true})
	a := attest.SingleUse(v, &replayMem{held: map[string]bool{}})
	tok := e.is.Sign(e.claims(), nil)
	if _, err := a.Attest(context.Background(), attest.Evidence{Token: []byte(tok)}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Attest(context.Background(), attest.Evidence{Token: []byte(tok)}); !errors.Is(err, attest.ErrReplayed) {
		t.Fatalf("second use of a single-use token = %v", err)
	}
}

type replayMem struct{ held map[string]bool }

func (r *replayMem) Claim(_ context.Context, key string, _ time.Time) error {
	if r.held[key] {
		return attest.ErrReplayed
	}
	r.held[key] = true
	return nil
}

// BenchmarkVerifyCached: a workload reusing its token, against a bare
// jwt.Parse of it (ratio reported; well under 1 is the point).
func BenchmarkVerifyCached(b *testing.B) {
	e := cachedEnv(b)
	measureAgainstParse(b, e, e.is.Sign(e.fixtureLike(), nil))
}
