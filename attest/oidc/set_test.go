package oidc_test

import (
	"context"
	"testing"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/federation/federationtest"
)

// TestSet: providers put in force by Swap are trusted from the next
// Attest and no longer once swapped out; the fixed ones stay; a Swap that
// cannot build leaves the set as it was.
func TestSet(t *testing.T) {
	e := newEnv(t, nil)
	added := federationtest.NewIssuer(t)
	fixed := oidc.ProviderConfig{Keys: provider(t, e.is, "ci", e.now), Audiences: []string{brokerAud}}
	extra := oidc.ProviderConfig{Keys: provider(t, added, "added", e.now), Audiences: []string{brokerAud}}
	s, err := oidc.NewSet(oidc.Options{Now: e.now, CacheEntries: 10}, fixed)
	if err != nil {
		t.Fatal(err)
	}
	c := e.claims()
	c["iss"] = added.URL
	addedTok, fixedTok := added.Sign(c, nil), e.is.Sign(e.claims(), nil)
	check := func(step, tok string, wantReason string) {
		t.Helper()
		_, err := s.Attest(context.Background(), attest.Evidence{Token: []byte(tok)})
		if got := attest.ReasonOf(err); wantReason == "" && err != nil || wantReason != "" && got != wantReason {
			t.Fatalf("%s: Attest = %v (reason %q), want %q", step, err, got, wantReason)
		}
	}
	check("fixed", fixedTok, "")
	check("before Swap", addedTok, "untrusted_issuer")
	if err := s.Swap([]oidc.ProviderConfig{extra}); err != nil {
		t.Fatal(err)
	}
	if !s.Trusts(added.URL) {
		t.Fatal("Trusts: the swapped-in issuer is not trusted")
	}
	check("after Swap", addedTok, "")
	check("fixed after Swap", fixedTok, "")
	if err := s.Swap([]oidc.ProviderConfig{extra, extra}); err == nil {
		t.Fatal("a Swap with one issuer twice succeeded")
	}
	check("after a failed Swap", addedTok, "")
	if err := s.Swap(nil); err != nil {
		t.Fatal(err)
	}
	check("swapped out", addedTok, "untrusted_issuer")
	check("fixed at the end", fixedTok, "")
}
