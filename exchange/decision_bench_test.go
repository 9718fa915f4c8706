package exchange_test

import (
	"context"
	"testing"

	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/issuer"
)

// BenchmarkRefresh serves one refresh per iteration, in-process, over a
// real SQLite store: the rotation, the consent check, (since the decision
// review) the trust maps deciding again, the mint. The figure: at most 1.3
// times the refresh before the review (go test ./exchange -run X -bench
// Refresh -cpu 1, on both commits).
func BenchmarkRefresh(b *testing.B) {
	be := newBrowserEnv(b)
	res := be.post(b, redeem(be.code(b, "fam-bench", nil)), nil)
	if res.status != 200 {
		b.Fatalf("redeem: %d %s", res.status, res.raw)
	}
	refresh := res.body["refresh_token"].(string)
	b.ReportAllocs()
	for b.Loop() {
		res := be.post(b, refreshForm(refresh), nil)
		if res.status != 200 {
			b.Fatalf("refresh: %d %s", res.status, res.raw)
		}
		refresh = res.body["refresh_token"].(string)
	}
}

// BenchmarkAcceptRevocation measures the one acceptance of our own tokens
// against the signature and claims alone (issuer.Inspect): with the
// revocation list's answer cached (warm: the figure, at most 5 µs more) and
// read from the SQLite store every time (cold).
func BenchmarkAcceptRevocation(b *testing.B) {
	ctx := context.Background()
	l := newLifecycleEnv(b)
	tok, err := l.iss.Mint(ctx, issuer.Grant{Subject: "ci/" + mainSub, Audience: paymentsMCP, ClientID: "payments-ci", Scopes: []string{"payments:read"}})
	if err != nil {
		b.Fatal(err)
	}
	warm, _ := exchange.NewAcceptor(exchange.AcceptorConfig{Tokens: l.iss, Revocations: l.st, SingleUse: l.st})
	cold, _ := exchange.NewAcceptor(exchange.AcceptorConfig{Tokens: l.iss, Revocations: l.st, SingleUse: l.st, CacheFor: -1})
	b.Run("inspect", func(b *testing.B) {
		for b.Loop() {
			if _, err := l.iss.Inspect(tok.Raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, a := range []struct {
		name string
		acc  *exchange.Acceptor
	}{{"accept-warm", warm}, {"accept-cold", cold}} {
		b.Run(a.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := a.acc.Accept(ctx, tok.Raw, exchange.Acceptance{Audience: paymentsMCP, Holder: true}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
