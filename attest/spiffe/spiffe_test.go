package spiffe_test

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/spiffe"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/federation/federationtest"
)

const broker = "https://sts.example.com"

type static struct{ td *federationtest.TrustDomain }

func (s static) GetBundleForTrustDomain(spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	return s.td.Bundle(), nil
}

func setup(t testing.TB) (*spiffe.Verifier, *federationtest.TrustDomain, *federationtest.TrustDomain, *federationtest.TrustDomain) {
	t.Helper()
	prod, partner, stranger := federationtest.NewTrustDomain("prod.example.org"), federationtest.NewTrustDomain("partner.example.com"), federationtest.NewTrustDomain("stranger.example.net")
	b := federation.NewBundles()
	b.Add(prod.TD, static{prod})
	b.Add(partner.TD, static{partner})
	return &spiffe.Verifier{Bundles: b, Audiences: []string{broker}}, prod, partner, stranger
}

func x509ev(chain []*x509.Certificate) attest.Evidence {
	return attest.Evidence{Type: spiffe.EvidenceX509SVID, PeerCertificates: chain}
}

func TestX509SVID(t *testing.T) {
	v, prod, partner, stranger := setup(t)
	chain, _ := prod.X509SVID("/ns/billing/sa/agent", federationtest.SVIDOptions{})
	id, err := v.Attest(context.Background(), x509ev(chain))
	if err != nil {
		t.Fatal(err)
	}
	if id.Kind != "spiffe" || id.Provider != "prod.example.org" || id.Subject != "spiffe://prod.example.org/ns/billing/sa/agent" ||
		id.Attributes["path"] != "/ns/billing/sa/agent" || len(id.Attributes["segments"].([]any)) != 4 || id.CertThumbprint == "" ||
		id.Attributes["x5t#S256"] != id.CertThumbprint || !id.Expiry.Equal(chain[0].NotAfter) {
		t.Fatalf("identity %+v", id)
	}
	if id, err := v.Attest(context.Background(), x509ev(func() []*x509.Certificate { c, _ := partner.X509SVID("/svc", federationtest.SVIDOptions{}); return c }())); err != nil || id.Provider != "partner.example.com" {
		t.Fatalf("second trust domain: %+v %v", id, err)
	}

	// An SVID that names prod but was signed by partner's CA: each trust
	// domain's bundle validates only its own SVIDs.
	forged, _ := partner.X509SVID("", federationtest.SVIDOptions{URIs: []string{"spiffe://prod.example.org/admin"}})
	tests := []struct {
		name  string
		chain []*x509.Certificate
	}{
		{"expired", func() []*x509.Certificate {
			c, _ := prod.X509SVID("/a", federationtest.SVIDOptions{NotAfter: time.Now().Add(-time.Minute)})
			return c
		}()},
		{"another trust domain's CA", forged},
		{"untrusted trust domain", func() []*x509.Certificate { c, _ := stranger.X509SVID("/a", federationtest.SVIDOptions{}); return c }()},
		{"no URI SAN", func() []*x509.Certificate {
			c, _ := prod.X509SVID("", federationtest.SVIDOptions{URIs: []string{}})
			return c
		}()},
		{"two URI SANs", func() []*x509.Certificate {
			c, _ := prod.X509SVID("", federationtest.SVIDOptions{URIs: []string{"spiffe://prod.example.org/a", "spiffe://prod.example.org/b"}})
			return c
		}()},
		{"leaf with the CA flag", func() []*x509.Certificate {
			c, _ := prod.X509SVID("/a", federationtest.SVIDOptions{IsCA: true})
			return c
		}()},
		{"no certificate", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Attest(context.Background(), x509ev(tt.chain))
			if !errors.Is(err, attest.ErrInvalidEvidence) {
				t.Fatalf("Attest = %v, want invalid evidence", err)
			}
		})
	}
	// A rotated CA: the old SVID no longer verifies, a new one does.
	prod.Rotate()
	if _, err := v.Attest(context.Background(), x509ev(chain)); !errors.Is(err, attest.ErrInvalidEvidence) {
		t.Fatalf("SVID of the rotated-away CA = %v", err)
	}
}

func TestJWTSVID(t *testing.T) {
	v, prod, partner, _ := setup(t)
	tok := prod.JWTSVID("/ns/billing/sa/agent", []string{broker}, time.Now().Add(5*time.Minute))
	id, err := v.Attest(context.Background(), attest.Evidence{Type: "urn:ietf:params:oauth:token-type:jwt", Token: []byte(tok)})
	if err != nil || id.Subject != "spiffe://prod.example.org/ns/billing/sa/agent" || id.Provider != "prod.example.org" {
		t.Fatalf("JWT-SVID: %+v %v", id, err)
	}
	for name, c := range map[string]struct {
		tok    string
		reason string
	}{
		"wrong audience": {prod.JWTSVID("/a", []string{"https://other.example"}, time.Now().Add(time.Minute)), "wrong_audience"},
		"expired":        {prod.JWTSVID("/a", []string{broker}, time.Now().Add(-time.Minute)), "invalid_svid"},
		"other TD's key": {partner.SignJWT("spiffe://prod.example.org/admin", []string{broker}, time.Now().Add(time.Minute)), "invalid_svid"},
		"not a JWT":      {"x.y.z", "invalid_svid"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := v.Attest(context.Background(), attest.Evidence{Token: []byte(c.tok)})
			if attest.ReasonOf(err) != c.reason {
				t.Fatalf("Attest = %v (reason %q), want %q", err, attest.ReasonOf(err), c.reason)
			}
		})
	}
}

// FuzzAttestJWTSVID: JWT-SVIDs are attacker input. Attest never panics, and
// an identity it returns is in a trusted trust domain, named by it.
func FuzzAttestJWTSVID(f *testing.F) {
	v, prod, partner, stranger := setup(f)
	f.Add(prod.JWTSVID("/ns/billing/sa/agent", []string{broker}, time.Now().Add(time.Hour)))
	f.Add(partner.SignJWT("spiffe://prod.example.org/admin", []string{broker}, time.Now().Add(time.Hour)))
	f.Add(stranger.JWTSVID("/a", []string{broker}, time.Now().Add(time.Hour)))
	f.Add("x.y.z")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := v.Attest(context.Background(), attest.Evidence{Type: "urn:ietf:params:oauth:token-type:jwt", Token: []byte(tok)})
		if err != nil {
			if attest.ReasonOf(err) == "" {
				t.Fatalf("an error without a reason: %v", err)
			}
			return
		}
		if (id.Provider != "prod.example.org" && id.Provider != "partner.example.com") || !strings.HasPrefix(id.Subject, "spiffe://"+id.Provider+"/") {
			t.Fatalf("identity %+v", id)
		}
	})
}
