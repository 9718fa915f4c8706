package exchange_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/issuer"
)

// TestAcceptanceMatrix: every place of the token endpoint's handlers that
// accepts one of our own tokens (introspection by a resource server,
// introspection's administrator login, delegation's subject token) × every
// acceptance check gives its exact outcome. The admin API's row is
// TestRevokedAdminToken (internal/admin); the edges reach these checks
// through introspection.
func TestAcceptanceMatrix(t *testing.T) {
	ctx := context.Background()
	sum := sha256.Sum256([]byte("a certificate the request does not present"))
	x5t := base64.RawURLEncoding.EncodeToString(sum[:])
	type token struct {
		aud, client string
		scopes      []string
		singleUse   bool
		cnf         *issuer.Confirmation
	}
	// A case makes the token's variant and, before its first use, revokes
	// what it says (at another replica: straight in the store).
	type tcase struct {
		name   string
		mut    func(*token)
		revoke func(l *lifecycleEnv, v issuer.VerifiedToken)
		twice  bool // used twice: the second outcome counts
	}
	revoke := func(kind string, value func(v issuer.VerifiedToken) string) func(l *lifecycleEnv, v issuer.VerifiedToken) {
		return func(l *lifecycleEnv, v issuer.VerifiedToken) {
			if err := l.st.Revoke(ctx, kind, value(v), l.now, l.now.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []tcase{
		{name: "valid"},
		{name: "revoked by jti", revoke: revoke(exchange.RevokeJTI, func(v issuer.VerifiedToken) string { return v.ID })},
		{name: "revoked by subject", revoke: revoke(exchange.RevokeSubject, func(v issuer.VerifiedToken) string { return v.Subject })},
		{name: "revoked by client", revoke: revoke(exchange.RevokeClient, func(v issuer.VerifiedToken) string { return v.ClientID })},
		{name: "single use used twice", mut: func(k *token) { k.singleUse = true }, twice: true},
		{name: "DPoP-bound as bearer", mut: func(k *token) { k.cnf = &issuer.Confirmation{JKT: x5t} }},
		{name: "certificate-bound without the certificate", mut: func(k *token) { k.cnf = &issuer.Confirmation{X5TS256: x5t} }},
	}
	type acceptor struct {
		name  string
		token token
		use   func(l *lifecycleEnv, raw string) string // the outcome, as compared
		want  map[string]string                        // by case
	}
	introspected := func(l *lifecycleEnv, raw string) string {
		status, body := call(t, l.introspect, with(l.assertion(paymentsServer), "token", raw))
		if status != 200 {
			return "status " + string(rune('0'+status/100))
		}
		if body["active"] == true {
			return "active"
		}
		return "inactive"
	}
	adminLogin := func(l *lifecycleEnv, raw string) string {
		status, body := call(t, l.introspect, url.Values{"token": {"x.y.z"}}, "Authorization", "Bearer "+raw)
		if status == 200 {
			return "200"
		}
		return body["error"].(string)
	}
	delegated := func(l *lifecycleEnv, raw string) string {
		res := l.post(t, delegationForm(raw, l.subjectToken(serverSub, nil), "https://ledger.example.com/mcp"), nil)
		if res.status == 200 {
			return "200"
		}
		return res.body["error"].(string)
	}
	acceptors := []acceptor{
		{"introspection by the resource server", token{aud: paymentsMCP, client: "payments-ci", scopes: []string{"payments:read"}}, introspected, map[string]string{
			"valid": "active", "revoked by jti": "inactive", "revoked by subject": "inactive", "revoked by client": "inactive",
			"single use used twice": "inactive",
			// The resource server checks the holder and reads cnf.
			"DPoP-bound as bearer": "active", "certificate-bound without the certificate": "active",
		}},
		{"introspection's administrator login", token{aud: broker + "/admin", client: "ops-cli", scopes: []string{"mcpsts:admin"}}, adminLogin, map[string]string{
			"valid": "200", "revoked by jti": "invalid_client", "revoked by subject": "invalid_client", "revoked by client": "invalid_client",
			"single use used twice": "invalid_client", "DPoP-bound as bearer": "invalid_client", "certificate-bound without the certificate": "invalid_client",
		}},
		{"delegation's subject token", token{aud: paymentsMCP, client: "payments-ci", scopes: []string{"payments:read"}}, delegated, map[string]string{
			"valid": "200", "revoked by jti": "invalid_request", "revoked by subject": "invalid_request", "revoked by client": "invalid_request",
			"single use used twice": "invalid_request",
			// A subject token is a statement about its subject, not
			// the actor's credential: the actor proves itself.
			"DPoP-bound as bearer": "200", "certificate-bound without the certificate": "200",
		}},
	}
	for _, a := range acceptors {
		for _, c := range cases {
			t.Run(a.name+"/"+c.name, func(t *testing.T) {
				want, ok := a.want[c.name]
				if !ok {
					t.Fatalf("no expected outcome for %q", c.name)
				}
				l := newLifecycleEnv(t)
				k := a.token
				if c.mut != nil {
					c.mut(&k)
				}
				tok, err := l.iss.Mint(ctx, issuer.Grant{Subject: "ci/" + mainSub, SubjectType: issuer.Workload, Audience: k.aud, ClientID: k.client,
					Scopes: k.scopes, SingleUse: k.singleUse, Confirmation: k.cnf})
				if err != nil {
					t.Fatal(err)
				}
				if c.revoke != nil {
					v, _ := l.iss.Inspect(tok.Raw)
					c.revoke(l, v)
				}
				got := a.use(l, tok.Raw)
				if c.twice {
					if got != a.want["valid"] {
						t.Fatalf("first use: %s, want %s", got, a.want["valid"])
					}
					got = a.use(l, tok.Raw)
				}
				if got != want {
					t.Fatalf("%s, want %s", got, want)
				}
			})
		}
	}
}

// TestAcceptor: each check of the one acceptance, on its own, with an
// injected clock for the revocation cache's bound.
func TestAcceptor(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "s.db"), store.WithClock(e.clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := e.now
	clock := func() time.Time { return now }
	newAcceptor := func() *exchange.Acceptor {
		a, err := exchange.NewAcceptor(exchange.AcceptorConfig{Tokens: e.iss, Revocations: st, SingleUse: st, CacheFor: time.Second, Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	mint := func(g issuer.Grant) string {
		g.Subject, g.ClientID, g.Scopes = "ci/"+mainSub, "payments-ci", []string{"payments:read"}
		if g.Audience == "" {
			g.Audience = paymentsMCP
		}
		tok, err := e.iss.Mint(ctx, g)
		if err != nil {
			t.Fatal(err)
		}
		return tok.Raw
	}
	a := newAcceptor()
	for _, tc := range []struct {
		name string
		raw  string
		want exchange.Acceptance
		err  error
	}{
		{"valid", mint(issuer.Grant{}), exchange.Acceptance{Audience: paymentsMCP, Holder: true}, nil},
		{"another audience", mint(issuer.Grant{Audience: ledgerMCP}), exchange.Acceptance{Audience: paymentsMCP}, exchange.ErrTokenAud},
		{"any audience when none is asked", mint(issuer.Grant{Audience: ledgerMCP}), exchange.Acceptance{}, nil},
		{"not ours", "x.y.z", exchange.Acceptance{}, exchange.ErrTokenInvalid},
		{"DPoP-bound without a proof", mint(issuer.Grant{Confirmation: &issuer.Confirmation{JKT: x5tOf("k")}}), exchange.Acceptance{Holder: true}, exchange.ErrTokenBinding},
		{"DPoP-bound with another key's proof", mint(issuer.Grant{Confirmation: &issuer.Confirmation{JKT: x5tOf("k")}}), exchange.Acceptance{Holder: true, ProofJKT: x5tOf("other")}, exchange.ErrTokenBinding},
		{"DPoP-bound with its key's proof", mint(issuer.Grant{Confirmation: &issuer.Confirmation{JKT: x5tOf("k")}}), exchange.Acceptance{Holder: true, ProofJKT: x5tOf("k")}, nil},
		{"certificate-bound without a certificate", mint(issuer.Grant{Confirmation: &issuer.Confirmation{X5TS256: x5tOf("c")}}), exchange.Acceptance{Holder: true}, exchange.ErrTokenBinding},
		{"bound, as a subject token", mint(issuer.Grant{Confirmation: &issuer.Confirmation{X5TS256: x5tOf("c")}}), exchange.Acceptance{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Accept(ctx, tc.raw, tc.want)
			if !errors.Is(err, tc.err) || (tc.err != nil) != (err != nil) {
				t.Fatalf("Accept = %v, want %v", err, tc.err)
			}
			if err != nil && !errors.Is(err, exchange.ErrNotAccepted) {
				t.Fatalf("a refusal that is not ErrNotAccepted: %v", err)
			}
		})
	}

	t.Run("revocation: here at once, at another replica within the cache's bound", func(t *testing.T) {
		here, there := newAcceptor(), newAcceptor()
		raw := mint(issuer.Grant{})
		v, _ := e.iss.Inspect(raw)
		for _, acc := range []*exchange.Acceptor{here, there} {
			if _, err := acc.Accept(ctx, raw, exchange.Acceptance{}); err != nil { // cached as not revoked
				t.Fatal(err)
			}
		}
		if err := here.Revoke(ctx, exchange.RevokeJTI, v.ID, now, v.ExpiresAt); err != nil {
			t.Fatal(err)
		}
		if _, err := here.Accept(ctx, raw, exchange.Acceptance{}); !errors.Is(err, exchange.ErrTokenRevoked) {
			t.Fatalf("where it was revoked: %v", err)
		}
		if _, err := there.Accept(ctx, raw, exchange.Acceptance{}); err != nil {
			t.Fatalf("at the other replica within the bound: %v, want its cached answer", err)
		}
		now = now.Add(time.Second)
		if _, err := there.Accept(ctx, raw, exchange.Acceptance{}); !errors.Is(err, exchange.ErrTokenRevoked) {
			t.Fatalf("at the other replica past the bound: %v", err)
		}
	})
	t.Run("single use: once per use", func(t *testing.T) {
		raw := mint(issuer.Grant{SingleUse: true})
		for i, want := range []error{nil, exchange.ErrTokenUsed} {
			if _, err := a.Accept(ctx, raw, exchange.Acceptance{UseOnce: exchange.UseAccess}); !errors.Is(err, want) || (want == nil) != (err == nil) {
				t.Fatalf("access %d: %v, want %v", i+1, err, want)
			}
		}
		if _, err := a.Accept(ctx, raw, exchange.Acceptance{UseOnce: exchange.UseDelegation}); err != nil {
			t.Fatalf("its one delegation after its access: %v", err)
		}
		if _, err := a.Accept(ctx, raw, exchange.Acceptance{}); err != nil {
			t.Fatalf("accepted without a use claimed: %v", err)
		}
	})
}

func x5tOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
