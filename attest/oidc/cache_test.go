package oidc_test

import (
	"context"
	"errors"
	"fmt"
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
	for range 2 { // seen again: cached
		if _, err := e.attest(tok); err != nil {
			t.Fatal(err)
		}
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

	// A tampered token is not a cache hit (the original is cached).
	e = cachedEnv(t)
	tok = e.is.Sign(e.claims(), nil)
	for range 2 {
		if _, err := e.attest(tok); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.attest(tok[:len(tok)-2] + "AA"); attest.ReasonOf(err) != "bad_signature" {
		t.Fatalf("a tampered token = %v, want bad_signature", err)
	}
}

// TestVerifiedCacheAdmission: a token is cached only once it is seen
// again, so that tokens used once each do not fill the cache.
func TestVerifiedCacheAdmission(t *testing.T) {
	e := cachedEnv(t)
	v := e.v
	for i := range 50 {
		c := e.claims()
		c["jti"] = fmt.Sprint("once-", i) // each token distinct
		if _, err := e.attest(e.is.Sign(c, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.CacheLen(); n != 0 {
		t.Fatalf("%d tokens used once each cached, want none", n)
	}
	tok := e.is.Sign(e.claims(), nil)
	for i := range 3 {
		if _, err := e.attest(tok); err != nil {
			t.Fatal(err)
		}
		if n, want := v.CacheLen(), min(i, 1); n != want {
			t.Fatalf("after use %d: %d cached, want %d", i+1, n, want)
		}
	}
}

// TestVerifiedCacheMaxAge: a cached token is refused once it is older than
// the provider's maximum token age, though it has not expired.
func TestVerifiedCacheMaxAge(t *testing.T) {
	e := newEnv(t, nil)
	v, err := oidc.NewVerifier(oidc.Options{Now: e.now, CacheEntries: 100},
		oidc.ProviderConfig{Keys: provider(t, e.is, "ci", e.now), Audiences: []string{brokerAud}, MaxTokenAge: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	e.v = v
	c := e.claims()
	c["exp"] = e.now().Add(time.Hour).Unix()
	tok := e.is.Sign(c, nil)
	for range 2 {
		if _, err := e.attest(tok); err != nil {
			t.Fatal(err)
		}
	}
	e.advance(4 * time.Minute)
	if _, err := e.attest(tok); err != nil {
		t.Fatalf("within the maximum age: %v", err)
	}
	e.advance(3 * time.Minute) // 7m: past 5m and the 60s leeway; exp and the key set still hold
	if _, err := e.attest(tok); attest.ReasonOf(err) != "token_too_old" {
		t.Fatalf("a cached token past the maximum age = %v, want token_too_old", err)
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
