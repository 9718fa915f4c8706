package issuer_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/issuer/keystoretest"
)

const iss = "https://sts.example.com"

// clock is a manual clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newKEK(t testing.TB) *issuer.KEK {
	t.Helper()
	text, err := issuer.GenerateKEK()
	if err != nil {
		t.Fatal(err)
	}
	k, err := issuer.ParseKEK(text)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type fixture struct {
	iss   *issuer.Issuer
	store *keystoretest.Memory
	clock *clock
	kek   *issuer.KEK
}

func newIssuer(t testing.TB, alg issuer.Algorithm, mutate func(*issuer.Config)) *fixture {
	t.Helper()
	f := &fixture{store: keystoretest.NewMemory(), clock: &clock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}, kek: newKEK(t)}
	cfg := issuer.Config{
		Issuer: iss,
		Store:  f.store,
		Local:  &issuer.LocalKeys{KEK: f.kek, Algorithm: alg},
		Clock:  f.clock.Now,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	var err error
	if f.iss, err = issuer.New(cfg); err != nil {
		t.Fatal(err)
	}
	if err := f.iss.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f
}

// jwks fetches the issuer's JWKS over a real TLS server and parses it with
// go-jose, a library independent of the one that mints.
func jwks(t testing.TB, i *issuer.Issuer) jose.JSONWebKeySet {
	t.Helper()
	srv := httptest.NewTLSServer(i.JWKSHandler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	return set
}

func grant() issuer.Grant {
	return issuer.Grant{
		Subject:  "k8s-prod/system:serviceaccount:billing:agent",
		Audience: "https://payments.example.com/mcp",
		ClientID: "billing-agent",
		Scopes:   []string{"payments:read", "payments:refund"},
	}
}

var allAlgs = map[issuer.Algorithm]jose.SignatureAlgorithm{
	issuer.ES256: jose.ES256, issuer.EdDSA: jose.EdDSA, issuer.RS256: jose.RS256,
}

func TestMintVerifiesWithGoJose(t *testing.T) {
	for alg, joseAlg := range allAlgs {
		t.Run(string(alg), func(t *testing.T) {
			f := newIssuer(t, alg, nil)
			g := grant()
			g.Actor = &issuer.Actor{Subject: "workload:gateway", Actor: &issuer.Actor{Subject: "user-1"}}
			g.Confirmation = &issuer.Confirmation{X5TS256: base64.RawURLEncoding.EncodeToString(make([]byte, 32))}
			g.Claims = map[string]any{"team": "billing"}
			tok, err := f.iss.Mint(context.Background(), g)
			if err != nil {
				t.Fatal(err)
			}
			set := jwks(t, f.iss)

			parsed, err := josejwt.ParseSigned(tok.Raw, []jose.SignatureAlgorithm{joseAlg})
			if err != nil {
				t.Fatal(err)
			}
			h := parsed.Headers[0]
			if h.KeyID != tok.KeyID || h.Algorithm != string(joseAlg) || h.ExtraHeaders["typ"] != "at+jwt" {
				t.Fatalf("header = %+v", h)
			}
			keys := set.Key(h.KeyID)
			if len(keys) != 1 || keys[0].Algorithm != string(alg) || keys[0].Use != "sig" {
				t.Fatalf("JWKS has %d keys for kid %s: %+v", len(keys), h.KeyID, set)
			}
			var std josejwt.Claims
			var all map[string]any
			if err := parsed.Claims(keys[0].Key, &std, &all); err != nil {
				t.Fatalf("signature does not verify against the JWKS: %v", err)
			}
			now := f.clock.Now().Truncate(time.Second)
			if err := std.ValidateWithLeeway(josejwt.Expected{
				Issuer: iss, Subject: "workload:k8s-prod/system:serviceaccount:billing:agent",
				AnyAudience: josejwt.Audience{"https://payments.example.com/mcp"}, Time: now,
			}, 0); err != nil {
				t.Fatal(err)
			}
			if std.Expiry.Time().Sub(std.IssuedAt.Time()) != 15*time.Minute || !std.NotBefore.Time().Equal(now) {
				t.Errorf("iat %v nbf %v exp %v: want a 15m default lifetime from now", std.IssuedAt, std.NotBefore, std.Expiry)
			}
			if all["client_id"] != "billing-agent" || all["scope"] != "payments:read payments:refund" || all["team"] != "billing" {
				t.Errorf("claims = %v", all)
			}
			if _, ok := all["aud"].(string); !ok {
				t.Errorf("aud = %#v, want a single string", all["aud"])
			}
			act := all["act"].(map[string]any)
			if act["sub"] != "workload:gateway" || act["act"].(map[string]any)["sub"] != "user-1" {
				t.Errorf("act = %v", act)
			}
			if all["cnf"].(map[string]any)["x5t#S256"] == nil {
				t.Errorf("cnf = %v", all["cnf"])
			}
			jti, err := base64.RawURLEncoding.DecodeString(std.ID)
			if err != nil || len(jti) < 16 || std.ID != tok.ID {
				t.Errorf("jti %q: want >= 128 random bits", std.ID)
			}
			wantKeys := []string{"act", "aud", "client_id", "cnf", "exp", "iat", "iss", "jti", "nbf", "scope", "sub", "team"}
			if len(all) != len(wantKeys) {
				t.Errorf("claims %v, want exactly %v", all, wantKeys)
			}
		})
	}
}

func TestMintLimits(t *testing.T) {
	f := newIssuer(t, issuer.ES256, func(c *issuer.Config) { c.MaxTTL = 30 * time.Minute })
	tests := []struct {
		name    string
		mutate  func(*issuer.Grant)
		wantErr string
	}{
		{"empty subject", func(g *issuer.Grant) { g.Subject = "" }, "empty subject"},
		{"control char subject", func(g *issuer.Grant) { g.Subject = "a\nb" }, "control characters"},
		{"user subject without its provider", func(g *issuer.Grant) {
			g.SubjectType, g.Subject = issuer.User, "alice"
		}, "a user subject is PROVIDER/SUBJECT"},
		{"user subject with an empty provider", func(g *issuer.Grant) {
			g.SubjectType, g.Subject = issuer.User, "/alice"
		}, "a user subject is PROVIDER/SUBJECT"},
		{"no audience", func(g *issuer.Grant) { g.Audience = "" }, "audience is empty"},
		{"relative audience", func(g *issuer.Grant) { g.Audience = "/mcp" }, "is not an absolute URI"},
		{"two audiences", func(g *issuer.Grant) { g.Audience = "https://a.example https://b.example" }, "audience"},
		{"audience fragment", func(g *issuer.Grant) { g.Audience = "https://a.example/mcp#x" }, "has a fragment"},
		{"no client", func(g *issuer.Grant) { g.ClientID = "" }, "client_id is empty"},
		{"bad scope", func(g *issuer.Grant) { g.Scopes = []string{"a b"} }, `scope "a b" is not a valid scope token`},
		{"quote in scope", func(g *issuer.Grant) { g.Scopes = []string{`a"b`} }, "not a valid scope token"},
		{"repeated scope", func(g *issuer.Grant) { g.Scopes = []string{"a", "a"} }, `scope "a" repeated`},
		{"too short", func(g *issuer.Grant) { g.TTL = 30 * time.Second }, "lifetime 30s is outside [1m0s, 30m0s]"},
		{"above configured max", func(g *issuer.Grant) { g.TTL = 31 * time.Minute }, "lifetime 31m0s is outside"},
		{"above hard max", func(g *issuer.Grant) { g.TTL = 2 * time.Hour }, "lifetime 2h0m0s is outside"},
		{"reserved claim iss", func(g *issuer.Grant) { g.Claims = map[string]any{"iss": "https://evil"} }, `claim "iss" is reserved`},
		{"reserved claim aud", func(g *issuer.Grant) { g.Claims = map[string]any{"aud": []string{"x", "y"}} }, `claim "aud" is reserved`},
		{"reserved claim cnf", func(g *issuer.Grant) { g.Claims = map[string]any{"cnf": map[string]string{}} }, `claim "cnf" is reserved`},
		// Finding 1 of the security review: encoding/json reads "Aud" as
		// aud, so a case variant of a reserved claim is reserved too.
		{"reserved claim Aud", func(g *issuer.Grant) { g.Claims = map[string]any{"Aud": "https://i.example/admin"} }, `claim "Aud" is reserved`},
		{"reserved claim Scope", func(g *issuer.Grant) { g.Claims = map[string]any{"Scope": "mcpsts:admin"} }, `claim "Scope" is reserved`},
		{"reserved claim EXP", func(g *issuer.Grant) { g.Claims = map[string]any{"EXP": 4102444800} }, `claim "EXP" is reserved`},
		{"reserved claim with a long s", func(g *issuer.Grant) { g.Claims = map[string]any{"\u017fcope": "x"} }, "is reserved"},
		{"claim name outside the pattern", func(g *issuer.Grant) { g.Claims = map[string]any{"Team": "x"} }, `claim "Team": an extra claim's name is lower-case`},
		{"empty claim name", func(g *issuer.Grant) { g.Claims = map[string]any{"": "x"} }, `claim "": an extra claim's name`},
		{"nested names that fold together", func(g *issuer.Grant) {
			g.Claims = map[string]any{"team": map[string]any{"name": 1, "NAME": 2}}
		}, "ambiguous member names"},
		{"unencodable claim", func(g *issuer.Grant) { g.Claims = map[string]any{"x": make(chan int)} }, "extra claims"},
		{"actor without subject", func(g *issuer.Grant) { g.Actor = &issuer.Actor{} }, "actor without a subject"},
		{"chain too long", func(g *issuer.Grant) {
			a := &issuer.Actor{Subject: "a"}
			for range 8 {
				a = &issuer.Actor{Subject: "a", Actor: a}
			}
			g.Actor = a
		}, "delegation chain longer than 8"},
		{"cnf with both", func(g *issuer.Grant) {
			x := base64.RawURLEncoding.EncodeToString(make([]byte, 32))
			g.Confirmation = &issuer.Confirmation{X5TS256: x, JKT: x}
		}, "exactly one of"},
		{"cnf not a digest", func(g *issuer.Grant) { g.Confirmation = &issuer.Confirmation{JKT: "abc"} }, "not base64url of a SHA-256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := grant()
			tt.mutate(&g)
			_, err := f.iss.Mint(context.Background(), g)
			if !errors.Is(err, issuer.ErrInvalidGrant) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Mint = %v, want ErrInvalidGrant containing %q", err, tt.wantErr)
			}
		})
	}

	t.Run("user subject in the user namespace with its provider, TTL honoured", func(t *testing.T) {
		g := grant()
		g.SubjectType, g.Subject, g.TTL, g.Scopes = issuer.User, "corp/alice@example.com", 5*time.Minute, nil
		tok, err := f.iss.Mint(context.Background(), g)
		if err != nil {
			t.Fatal(err)
		}
		if tok.Subject != "user:corp/alice@example.com" || tok.ExpiresAt.Sub(tok.IssuedAt) != 5*time.Minute {
			t.Fatalf("token = %+v", tok)
		}
		var claims map[string]any
		payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok.Raw, ".")[1])
		json.Unmarshal(payload, &claims)
		if _, ok := claims["scope"]; ok {
			t.Errorf("scope claim present without scopes: %v", claims)
		}
	})
}

func TestJTIsAreUnique(t *testing.T) {
	f := newIssuer(t, issuer.ES256, nil)
	seen := map[string]bool{}
	for range 1000 {
		tok, err := f.iss.Mint(context.Background(), grant())
		if err != nil {
			t.Fatal(err)
		}
		if seen[tok.ID] {
			t.Fatalf("jti %s repeated", tok.ID)
		}
		seen[tok.ID] = true
	}
}

// TestRotationSchedule runs the issuer through ten days of rotations in
// seven-minute steps, minting at each, and checks the lifecycle rules at
// every step against the JWKS that verifiers would see.
func TestRotationSchedule(t *testing.T) {
	f := newIssuer(t, issuer.ES256, nil)
	ctx := context.Background()
	type issued struct {
		kid string
		exp time.Time
	}
	var tokens []issued
	firstPublished := map[string]time.Time{}
	firstSigned := map[string]time.Time{}
	const step = 7 * time.Minute
	end := f.clock.Now().Add(10 * 24 * time.Hour)
	for f.clock.Now().Before(end) {
		f.clock.Advance(step)
		if _, err := f.iss.Rotate(ctx, false); err != nil {
			t.Fatal(err)
		}
		if err := f.iss.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		set := jwks(t, f.iss)
		published := map[string]bool{}
		for _, k := range set.Keys {
			published[k.KeyID] = true
			if _, ok := firstPublished[k.KeyID]; !ok {
				firstPublished[k.KeyID] = f.clock.Now()
			}
		}
		if len(set.Keys) > 3 {
			t.Fatalf("%v: %d keys published; expired keys are not removed", f.clock.Now(), len(set.Keys))
		}
		tok, err := f.iss.Mint(ctx, issuer.Grant{Subject: "s", Audience: "https://a.example", ClientID: "c", TTL: issuer.MaxTokenLifetime})
		if err != nil {
			t.Fatal(err)
		}
		if !published[tok.KeyID] {
			t.Fatalf("%v: token signed with %s, which the JWKS does not hold", f.clock.Now(), tok.KeyID)
		}
		if _, ok := firstSigned[tok.KeyID]; !ok {
			firstSigned[tok.KeyID] = f.clock.Now()
		}
		tokens = append(tokens, issued{tok.KeyID, tok.ExpiresAt})
		for _, old := range tokens {
			if f.clock.Now().Before(old.exp.Add(issuer.ClockLeeway)) && !published[old.kid] {
				t.Fatalf("%v: key %s was unpublished while a token it signed is valid until %v", f.clock.Now(), old.kid, old.exp)
			}
		}
	}
	if len(firstSigned) < 10 {
		t.Fatalf("%d keys signed in 10 days, want a rotation every day", len(firstSigned))
	}
	first := true
	for kid, signed := range firstSigned {
		lead := signed.Sub(firstPublished[kid])
		if lead == 0 && first {
			first = false // the very first key signs at once: nothing was cached before it
			continue
		}
		if lead < issuer.PublishLead {
			t.Errorf("key %s published %v before it first signed, want at least %v", kid, lead, issuer.PublishLead)
		}
	}
}

func TestRotateForce(t *testing.T) {
	f := newIssuer(t, issuer.ES256, nil)
	ctx := context.Background()
	res, err := f.iss.Rotate(ctx, true)
	if err != nil || res.Added == "" || !res.ActivatesAt.Equal(f.clock.Now().Add(issuer.PublishLead)) {
		t.Fatalf("forced Rotate = %+v, %v", res, err)
	}
	again, err := f.iss.Rotate(ctx, true)
	if err != nil || again.Added != "" || again.Pending != res.Added {
		t.Fatalf("second forced Rotate = %+v, %v; want the pending key reported, none added", again, err)
	}
	if err := f.iss.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	tok, err := f.iss.Mint(ctx, grant())
	if err != nil || tok.KeyID == "" || tok.KeyID == res.Added {
		t.Fatalf("before PublishLead: signed by %q (the pending key is %s), %v", tok.KeyID, res.Added, err)
	}
	f.clock.Advance(issuer.PublishLead)
	if err := f.iss.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	tok, err = f.iss.Mint(ctx, grant())
	if err != nil || tok.KeyID != res.Added {
		t.Fatalf("after PublishLead the new key does not sign (signed by %q, %v)", tok.KeyID, err)
	}
	statuses, err := f.iss.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(statuses) != 2 || statuses[0].State != issuer.StateRetired || statuses[1].State != issuer.StateActive {
		t.Fatalf("states = %+v", statuses)
	}
}

func TestTamperedKeyFailsToLoad(t *testing.T) {
	ctx := context.Background()
	f := newIssuer(t, issuer.ES256, nil)
	kid := mustMint(t, f).KeyID

	t.Run("altered ciphertext", func(t *testing.T) {
		f.store.Tamper(kid, func(r *issuer.KeyRecord) { r.Sealed[len(r.Sealed)-1] ^= 1 })
		defer f.store.Tamper(kid, func(r *issuer.KeyRecord) { r.Sealed[len(r.Sealed)-1] ^= 1 })
		fresh, _ := issuer.New(issuer.Config{Issuer: iss, Store: f.store, Local: &issuer.LocalKeys{KEK: f.kek, Algorithm: issuer.ES256}, Clock: f.clock.Now})
		err := fresh.Start(ctx)
		if !errors.Is(err, issuer.ErrUnsealFailed) || !strings.Contains(err.Error(), "key "+kid) {
			t.Fatalf("Start = %v, want ErrUnsealFailed naming %s", err, kid)
		}
	})
	t.Run("wrong KEK", func(t *testing.T) {
		other, _ := issuer.New(issuer.Config{Issuer: iss, Store: f.store, Local: &issuer.LocalKeys{KEK: newKEK(t), Algorithm: issuer.ES256}, Clock: f.clock.Now})
		if err := other.Start(ctx); !errors.Is(err, issuer.ErrUnsealFailed) {
			t.Fatalf("Start with another KEK = %v, want ErrUnsealFailed", err)
		}
	})
	t.Run("sealed key moved to another record", func(t *testing.T) {
		// A key sealed for one kid does not open under another.
		rec, err := (&issuer.LocalKeys{KEK: f.kek, Algorithm: issuer.ES256}).NewKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.kek.Open(kid, rec.Sealed); !errors.Is(err, issuer.ErrUnsealFailed) {
			t.Fatalf("Open under another kid = %v", err)
		}
	})
	t.Run("failed reload keeps serving the previous set", func(t *testing.T) {
		f.store.Tamper(kid, func(r *issuer.KeyRecord) { r.Sealed[5] ^= 1 })
		defer f.store.Tamper(kid, func(r *issuer.KeyRecord) { r.Sealed[5] ^= 1 })
		// The running issuer holds the opened key already; a reload that
		// must open nothing new still succeeds.
		if err := f.iss.Refresh(ctx); err != nil {
			t.Fatalf("Refresh = %v", err)
		}
		mustMint(t, f)
	})
}

func mustMint(t *testing.T, f *fixture) issuer.Token {
	t.Helper()
	tok, err := f.iss.Mint(context.Background(), grant())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestStaleKeySetStopsSigning(t *testing.T) {
	f := newIssuer(t, issuer.ES256, nil)
	f.clock.Advance(issuer.MaxStaleness + time.Second)
	if _, err := f.iss.Mint(context.Background(), grant()); !errors.Is(err, issuer.ErrNoSigningKey) {
		t.Fatalf("Mint with a stale key set = %v, want ErrNoSigningKey", err)
	}
	if err := f.iss.Ready(context.Background()); !errors.Is(err, issuer.ErrNoSigningKey) {
		t.Fatalf("Ready = %v", err)
	}
	f.iss.Refresh(context.Background())
	mustMint(t, f)
}

func TestJWKSHandler(t *testing.T) {
	f := newIssuer(t, issuer.ES256, nil)
	srv := httptest.NewTLSServer(f.iss.JWKSHandler())
	defer srv.Close()
	c := srv.Client()
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Cache-Control") != "public, max-age=300" || resp.Header.Get("Content-Type") != "application/jwk-set+json" {
		t.Errorf("headers = %v", resp.Header)
	}
	etag := resp.Header.Get("ETag")
	if etag == "" || strings.Contains(string(body), `"d"`) {
		t.Fatalf("no ETag, or private key material in the JWKS: %s", body)
	}
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match with the current ETag = %d, want 304", resp.StatusCode)
	}
	f.iss.Rotate(context.Background(), true)
	f.iss.Refresh(context.Background())
	resp, _ = c.Do(req)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("ETag") == etag {
		t.Fatalf("after rotation: %d, ETag %s; want 200 and a new ETag", resp.StatusCode, resp.Header.Get("ETag"))
	}

	notLoaded, _ := issuer.New(issuer.Config{Issuer: iss, Store: keystoretest.NewMemory()})
	rec := httptest.NewRecorder()
	notLoaded.JWKSHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("JWKS before load = %d, want 503", rec.Code)
	}
}

func TestNewValidates(t *testing.T) {
	store := keystoretest.NewMemory()
	tests := []struct {
		name string
		cfg  issuer.Config
		want string
	}{
		{"http issuer", issuer.Config{Issuer: "http://sts.example", Store: store}, "is not an https URL"},
		{"issuer query", issuer.Config{Issuer: "https://sts.example?x=1", Store: store}, "may not have a query or fragment"},
		{"no store", issuer.Config{Issuer: iss}, "no key store"},
		{"ttl too long", issuer.Config{Issuer: iss, Store: store, MaxTTL: 2 * time.Hour}, "maximum token lifetime 2h0m0s is outside"},
		{"default above max", issuer.Config{Issuer: iss, Store: store, DefaultTTL: 20 * time.Minute, MaxTTL: 10 * time.Minute}, "exceeds the maximum"},
		{"rotation too fast", issuer.Config{Issuer: iss, Store: store, RotationPeriod: time.Hour}, "rotation period 1h0m0s is shorter"},
		{"local without KEK", issuer.Config{Issuer: iss, Store: store, Local: &issuer.LocalKeys{Algorithm: issuer.ES256}}, "need a key-encryption key"},
		{"bad algorithm", issuer.Config{Issuer: iss, Store: store, Local: &issuer.LocalKeys{KEK: newKEK(t), Algorithm: "HS256"}}, `"HS256" is not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := issuer.New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestKEK(t *testing.T) {
	for _, text := range []string{"", "c2hvcnQ=", "not base64 at all!", strings.Repeat("A", 64)} {
		if _, err := issuer.ParseKEK([]byte(text)); err == nil {
			t.Errorf("ParseKEK(%q) accepted", text)
		}
	}
	raw := make([]byte, 32)
	for _, text := range []string{
		base64.StdEncoding.EncodeToString(raw) + "\n", base64.RawURLEncoding.EncodeToString(raw),
	} {
		if _, err := issuer.ParseKEK([]byte(text)); err != nil {
			t.Errorf("ParseKEK(%q) = %v", text, err)
		}
	}
}

func TestRSAKeySize(t *testing.T) {
	if _, err := (&issuer.LocalKeys{KEK: newKEK(t), Algorithm: issuer.RS256, RSABits: 1024}).NewKey(); err == nil || !strings.Contains(err.Error(), "too small") {
		t.Fatalf("1024-bit RSA key: err = %v", err)
	}
}

func TestVerify(t *testing.T) {
	f := newIssuer(t, issuer.ES256, nil)
	g := grant()
	g.Audience = iss + "/admin"
	g.Scopes = []string{"mcpsts:admin"}
	tok, err := f.iss.Mint(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	v, err := f.iss.Verify(tok.Raw, iss+"/admin", nil)
	if err != nil || !v.HasScope("mcpsts:admin") || v.ClientID != "billing-agent" || v.Subject != tok.Subject {
		t.Fatalf("Verify = %+v, %v", v, err)
	}
	other := newIssuer(t, issuer.ES256, nil) // same issuer URL, other keys
	forged, err := other.iss.Mint(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.iss.Verify(forged.Raw, iss+"/admin", nil); err != nil {
		t.Fatalf("the other issuer's token at its own issuer: %v (the row below must differ only in its key)", err)
	}
	for name, c := range map[string]struct{ raw, aud string }{
		"wrong audience":  {tok.Raw, iss + "/other"},
		"unpublished key": {forged.Raw, iss + "/admin"},
		"tampered":        {tok.Raw[:len(tok.Raw)-4] + "AAAA", iss + "/admin"},
		"not a JWT":       {"x.y.z", iss + "/admin"},
		// typ is checked on tokens re-signed by the issuer's own key
		// below ("typ JWT", "no typ"): a header swapped here would fail
		// on its signature first.
	} {
		if _, err := f.iss.Verify(c.raw, c.aud, nil); !errors.Is(err, issuer.ErrInvalidToken) {
			t.Errorf("%s: Verify = %v, want ErrInvalidToken", name, err)
		}
	}
	// Tokens signed by the issuer's own key that differ from a minted one
	// in one respect, each of which alone must be refused.
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok.Raw, ".")[1])
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	with := func(extra string) []byte { // payload with extra members at its end
		return []byte(strings.TrimSuffix(string(payload), "}") + "," + extra + "}")
	}
	resign := func(typ string, payload []byte) string {
		t.Helper()
		h := map[string]any{}
		if typ != "" {
			h["typ"] = typ
		}
		raw, err := issuer.SignForTest(f.iss, h, payload)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	if _, err := f.iss.Verify(resign("at+jwt", payload), iss+"/admin", nil); err != nil {
		t.Fatalf("re-signed as minted: %v", err) // the rows below differ only in what they name
	}
	twoAud, _ := json.Marshal(map[string]any{"iss": claims["iss"], "sub": claims["sub"], "aud": []string{iss + "/admin", "https://other.example/mcp"},
		"client_id": claims["client_id"], "scope": claims["scope"], "iat": claims["iat"], "exp": claims["exp"], "jti": claims["jti"]})
	for name, raw := range map[string]string{
		"typ JWT":       resign("JWT", payload),
		"no typ":        resign("", payload),
		"two audiences": resign("at+jwt", twoAud),
		"Aud beside aud": resign("at+jwt", []byte(strings.Replace(string(with(`"Aud":"`+iss+`/admin"`)),
			`"aud":"`+iss+`/admin"`, `"aud":"https://payments.example.com/mcp"`, 1))),
		"Scope beside scope":          resign("at+jwt", with(`"Scope":"mcpsts:admin more"`)),
		"EXP beside exp":              resign("at+jwt", with(`"EXP":4102444800`)),
		"client_id twice, other case": resign("at+jwt", with(`"Client_ID":"admin"`)),
		"extra names that fold":       resign("at+jwt", with(`"team":"a","TEAM":"b"`)),
	} {
		if _, err := f.iss.Verify(raw, iss+"/admin", nil); !errors.Is(err, issuer.ErrInvalidToken) {
			t.Errorf("%s: Verify = %v, want ErrInvalidToken", name, err)
		}
	}
	f.clock.Advance(16 * time.Minute)
	if err := f.iss.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.iss.Verify(tok.Raw, iss+"/admin", nil); !errors.Is(err, issuer.ErrInvalidToken) {
		t.Errorf("expired token: %v", err)
	}
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestVerifyBinding (finding 4 of the security review): Verify enforces a
// token's cnf on the connection that presents it.
func TestVerifyBinding(t *testing.T) {
	f := newIssuer(t, issuer.ES256, nil)
	certOf := func(cn string) *x509.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c
	}
	holder, other := certOf("holder"), certOf("other")
	sum := sha256.Sum256(holder.Raw)
	tp := base64.RawURLEncoding.EncodeToString(sum[:])
	mint := func(cnf *issuer.Confirmation) string {
		g := grant()
		g.Audience, g.Confirmation = iss+"/admin", cnf
		tok, err := f.iss.Mint(context.Background(), g)
		if err != nil {
			t.Fatal(err)
		}
		return tok.Raw
	}
	bound, dpop, bearer := mint(&issuer.Confirmation{X5TS256: tp}), mint(&issuer.Confirmation{JKT: tp}), mint(nil)
	for _, tc := range []struct {
		name    string
		raw     string
		peer    []*x509.Certificate
		wantErr string
	}{
		{"bound, over its certificate", bound, []*x509.Certificate{holder}, ""},
		{"bearer, with or without a certificate", bearer, []*x509.Certificate{other}, ""},
		{"bound, without a certificate", bound, nil, "the token is bound to a client certificate the connection did not present"},
		{"bound, over another certificate", bound, []*x509.Certificate{other}, "the token is bound to another client certificate"},
		{"bound, its certificate second in the chain", bound, []*x509.Certificate{other, holder}, "the token is bound to another client certificate"},
		{"DPoP-bound, as a bearer token", dpop, []*x509.Certificate{holder}, "the token is DPoP-bound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := f.iss.Verify(tc.raw, iss+"/admin", tc.peer)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Verify = %v", err)
				}
				if tc.raw == bound && (v.Cnf == nil || v.Cnf.X5TS256 != tp) {
					t.Fatalf("Cnf = %+v", v.Cnf)
				}
				return
			}
			if !errors.Is(err, issuer.ErrInvalidToken) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Verify = %v, want ErrInvalidToken: %s", err, tc.wantErr)
			}
		})
	}
}

// TestMintIDJAG: an ID-JAG verifies against the JWKS with go-jose, has typ
// oauth-id-jag+jwt and exactly the SEP-990 claims, lives at most 5 minutes,
// and is not an access token: Verify refuses it.
func TestMintIDJAG(t *testing.T) {
	f := newIssuer(t, issuer.ES256, nil)
	g := issuer.IDJAG{Subject: "alice", Audience: "https://as.example.com", Resource: "https://files.example.com/mcp",
		ClientID: "desktop", Scopes: []string{"files:read"}, TTL: time.Hour}
	tok, err := f.iss.MintIDJAG(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := josejwt.ParseSigned(tok.Raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if typ := parsed.Headers[0].ExtraHeaders["typ"]; typ != issuer.IDJAGType {
		t.Fatalf("typ %v", typ)
	}
	var all map[string]any
	set := jwks(t, f.iss)
	if err := parsed.Claims(set.Key(tok.KeyID)[0].Key, &all); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"iss": iss, "sub": "alice", "aud": "https://as.example.com", "resource": "https://files.example.com/mcp",
		"client_id": "desktop", "scope": "files:read"}
	for k, v := range want {
		if all[k] != v {
			t.Errorf("%s = %v, want %v", k, all[k], v)
		}
	}
	if len(all) != len(want)+3 || all["jti"] == nil {
		t.Errorf("claims %v: want exactly iss sub aud resource client_id scope jti iat exp", all)
	}
	if life := all["exp"].(float64) - all["iat"].(float64); life != 300 {
		t.Errorf("lifetime %vs, want 300 (an hour asked)", life)
	}
	if _, err := f.iss.Verify(tok.Raw, "https://as.example.com", nil); err == nil {
		t.Fatal("an ID-JAG verified as an access token")
	}
	v, err := f.iss.VerifyIDJAG(tok.Raw, "https://as.example.com")
	if err != nil || v.Subject != "alice" || v.ClientID != "desktop" || v.Resource != g.Resource || v.ID != tok.ID || len(v.Scopes) != 1 {
		t.Fatalf("VerifyIDJAG: %+v %v", v, err)
	}
	if _, err := f.iss.VerifyIDJAG(tok.Raw, "https://other-as.example.com"); err == nil {
		t.Fatal("an ID-JAG for another authorization server verified")
	}
	// An access token carrying every claim of an ID-JAG is still not one:
	// the typ tells them apart.
	lookalike := grant()
	lookalike.Claims = map[string]any{"resource": "https://payments.example.com/mcp"}
	access, err := f.iss.Mint(context.Background(), lookalike)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.iss.VerifyIDJAG(access.Raw, "https://payments.example.com/mcp"); err == nil || !strings.Contains(err.Error(), "typ") {
		t.Fatalf("an access token verified as an ID-JAG: %v", err)
	}
	// Signed by the issuer's key and valid now, but living longer than an
	// ID-JAG may: refused. The same claims with the bound's lifetime pass
	// (the row differs in its lifetime only).
	long := func(life int64) string {
		iat := int64(all["iat"].(float64))
		payload, _ := json.Marshal(map[string]any{"iss": iss, "sub": "alice", "aud": "https://as.example.com", "resource": "https://files.example.com/mcp",
			"client_id": "desktop", "jti": "long-" + strconv.FormatInt(life, 10), "iat": iat, "exp": iat + life})
		raw, err := issuer.SignForTest(f.iss, map[string]any{"typ": issuer.IDJAGType}, payload)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	if _, err := f.iss.VerifyIDJAG(long(300), "https://as.example.com"); err != nil {
		t.Fatalf("an ID-JAG of exactly 5 minutes: %v", err)
	}
	if _, err := f.iss.VerifyIDJAG(long(3600), "https://as.example.com"); !errors.Is(err, issuer.ErrInvalidToken) || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("an ID-JAG of an hour: %v", err)
	}
	f.clock.Advance(6 * time.Minute)
	if _, err := f.iss.VerifyIDJAG(tok.Raw, "https://as.example.com"); err == nil {
		t.Fatal("an expired ID-JAG verified")
	}
	for _, bad := range []issuer.IDJAG{{Audience: "a", Resource: "r", ClientID: "c"}, {Subject: "alice", Resource: "r", ClientID: "c"}, {Subject: "a\nb", Audience: "a", Resource: "r", ClientID: "c"}} {
		if _, err := f.iss.MintIDJAG(context.Background(), bad); err == nil {
			t.Errorf("minted %+v", bad)
		}
	}
}
