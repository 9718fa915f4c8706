package federationtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/url"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TrustDomain is a fake SPIFFE trust domain: an X.509 CA and a JWT signing
// key, both rotatable, and the bundle that publishes them.
type TrustDomain struct {
	TD spiffeid.TrustDomain

	mu     sync.Mutex
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	jwtKey *ecdsa.PrivateKey
	kid    string
	serial int64
}

// NewTrustDomain makes a trust domain named name.
func NewTrustDomain(name string) *TrustDomain {
	t := &TrustDomain{TD: spiffeid.RequireTrustDomainFromString(name)}
	t.Rotate()
	return t
}

// Rotate replaces the CA and the JWT key.
func (t *TrustDomain) Rotate() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	t.serial++
	u, _ := url.Parse(t.TD.IDString())
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(t.serial), Subject: pkix.Name{CommonName: t.TD.Name() + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, URIs: []*url.URL{u},
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &t.caKey.PublicKey, t.caKey)
	t.ca, _ = x509.ParseCertificate(der)
	t.jwtKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	t.kid = fmt.Sprintf("%s-jwt-%d", t.TD.Name(), t.serial)
}

// Bundle is the trust domain's current bundle.
func (t *TrustDomain) Bundle() *spiffebundle.Bundle {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := spiffebundle.New(t.TD)
	b.AddX509Authority(t.ca)
	b.AddJWTAuthority(t.kid, &t.jwtKey.PublicKey)
	b.SetRefreshHint(time.Minute)
	return b
}

// SVIDOptions alter an X.509-SVID for negative tests.
type SVIDOptions struct {
	NotAfter time.Time // zero: an hour from now
	URIs     []string  // nil: the SPIFFE ID of path
	IsCA     bool
}

// X509SVID issues an X.509-SVID for path and returns its chain and key.
func (t *TrustDomain) X509SVID(path string, o SVIDOptions) ([]*x509.Certificate, crypto.Signer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().Add(time.Hour)
	}
	if o.URIs == nil {
		o.URIs = []string{t.TD.IDString() + path}
	}
	var uris []*url.URL
	for _, s := range o.URIs {
		u, _ := url.Parse(s)
		uris = append(uris, u)
	}
	t.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(t.serial), NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: o.NotAfter,
		URIs: uris, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	if o.IsCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, t.ca, &key.PublicKey, t.caKey)
	if err != nil {
		panic(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return []*x509.Certificate{leaf}, key
}

// JWTSVID signs a JWT-SVID for path and audience, valid until exp.
func (t *TrustDomain) JWTSVID(path string, audience []string, exp time.Time) string {
	return t.SignJWT(t.TD.IDString()+path, audience, exp)
}

// SignJWT signs a JWT-SVID-shaped token for any subject with this trust
// domain's key (to forge another trust domain's SVID in negative tests).
func (t *TrustDomain) SignJWT(sub string, audience []string, exp time.Time) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"sub": sub, "aud": audience, "exp": exp.Unix(), "iat": time.Now().Unix(),
	})
	tok.Header["kid"] = t.kid
	tok.Header["typ"] = "JWT"
	s, err := tok.SignedString(t.jwtKey)
	if err != nil {
		panic(err)
	}
	return s
}
