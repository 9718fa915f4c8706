package issuer_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpsts/mcpsts/issuer"
)

// benchGrant is a realistic grant: a workload subject, one audience, two
// scopes, one extra claim.
func benchGrant() issuer.Grant {
	g := grant()
	g.Claims = map[string]any{"team": "billing"}
	return g
}

// bareSigner signs like the issuer would, with no issuer around it: the
// golang-jwt method over a precomputed signing input.
func bareSigner(b *testing.B, alg issuer.Algorithm) (jwt.SigningMethod, crypto.Signer) {
	b.Helper()
	switch alg {
	case issuer.ES256:
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		return jwt.SigningMethodES256, k
	case issuer.EdDSA:
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		return jwt.SigningMethodEdDSA, k
	default:
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		return jwt.SigningMethodRS256, k
	}
}

func BenchmarkMint(b *testing.B) {
	for _, alg := range []issuer.Algorithm{issuer.ES256, issuer.EdDSA, issuer.RS256} {
		b.Run(string(alg), func(b *testing.B) {
			f := newIssuer(b, alg, nil)
			ctx, g := context.Background(), benchGrant()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := f.iss.Mint(ctx, g); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBareSign is the floor: one JWS signature of the same claims.
func BenchmarkBareSign(b *testing.B) {
	for _, alg := range []issuer.Algorithm{issuer.ES256, issuer.EdDSA, issuer.RS256} {
		b.Run(string(alg), func(b *testing.B) {
			input := signingInput(b, alg)
			method, key := bareSigner(b, alg)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := method.Sign(input, key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMintOverES256 measures Mint and a bare ES256 signature of the
// same claims alternately in one run and reports their ratio (the budget
// is 1.3).
func BenchmarkMintOverES256(b *testing.B) {
	f := newIssuer(b, issuer.ES256, nil)
	ctx, g := context.Background(), benchGrant()
	input := signingInput(b, issuer.ES256)
	method, key := bareSigner(b, issuer.ES256)
	var mint, bare time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if _, err := f.iss.Mint(ctx, g); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := method.Sign(input, key); err != nil {
			b.Fatal(err)
		}
		mint += t1.Sub(t0)
		bare += time.Since(t1)
	}
	b.ReportMetric(float64(mint.Nanoseconds())/float64(b.N), "mint-ns/op")
	b.ReportMetric(float64(bare.Nanoseconds())/float64(b.N), "bare-ns/op")
	b.ReportMetric(float64(mint)/float64(bare), "mint/bare")
}

// signingInput is the header.payload of a token minted for benchGrant.
func signingInput(b *testing.B, alg issuer.Algorithm) string {
	b.Helper()
	f := newIssuer(b, alg, nil)
	tok, err := f.iss.Mint(context.Background(), benchGrant())
	if err != nil {
		b.Fatal(err)
	}
	return tok.Raw[:strings.LastIndex(tok.Raw, ".")]
}
