// Package spiffe verifies SPIFFE identities with go-spiffe: X.509-SVIDs
// presented over mTLS and JWT-SVIDs presented as tokens, each against the
// bundle of its own trust domain only.
package spiffe

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/federation"
)

// Kind is the attest.Identity.Kind of SPIFFE identities.
const Kind = "spiffe"

// EvidenceX509SVID is the evidence type of a TLS client certificate chain.
const EvidenceX509SVID = "urn:mcpsts:evidence:x509-svid"

// Bundles gives the trust bundles; *federation.Bundles is one.
type Bundles interface {
	x509bundle.Source
	jwtbundle.Source
}

// Verifier verifies X.509-SVIDs (evidence of type EvidenceX509SVID, the
// chain in PeerCertificates) and JWT-SVIDs (any other type, the token in
// Token). The identity's Provider is the SVID's trust domain, its Subject
// the SPIFFE ID. Safe for concurrent use.
type Verifier struct {
	Bundles Bundles
	// Audiences: a JWT-SVID must name one of them (this broker).
	Audiences []string
	Clock     func() time.Time // for X.509-SVID validity; nil: time.Now
}

// Attest implements attest.Attestor.
func (v *Verifier) Attest(ctx context.Context, ev attest.Evidence) (attest.Identity, error) {
	if ev.Type == EvidenceX509SVID {
		return v.x509(ev)
	}
	return v.jwt(ev)
}

func (v *Verifier) now() time.Time {
	if v.Clock == nil {
		return time.Now()
	}
	return v.Clock()
}

func (v *Verifier) x509(ev attest.Evidence) (attest.Identity, error) {
	if len(ev.PeerCertificates) == 0 {
		return attest.Identity{}, attest.Invalid("no_certificate", "no client certificate was presented")
	}
	id, _, err := x509svid.Verify(ev.PeerCertificates, v.Bundles, x509svid.WithTime(v.now()))
	if err != nil {
		return attest.Identity{}, bundleError(err, "invalid_svid")
	}
	leaf := ev.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	out := identity(id)
	out.Expiry = leaf.NotAfter
	out.CertThumbprint = base64.RawURLEncoding.EncodeToString(sum[:])
	out.Attributes["x5t#S256"] = out.CertThumbprint
	return out, nil
}

func (v *Verifier) jwt(ev attest.Evidence) (attest.Identity, error) {
	svid, err := jwtsvid.ParseAndValidate(string(ev.Token), v.Bundles, v.Audiences)
	if err != nil {
		reason := "invalid_svid"
		if strings.Contains(err.Error(), "audience") {
			reason = "wrong_audience"
		}
		return attest.Identity{}, bundleError(err, reason)
	}
	out := identity(svid.ID)
	out.Expiry = svid.Expiry
	for k, val := range svid.Claims {
		if _, taken := out.Attributes[k]; !taken {
			out.Attributes[k] = val
		}
	}
	return out, nil
}

// bundleError: a trust domain whose bundle cannot be had now is
// unavailable; anything else is invalid evidence.
func bundleError(err error, reason string) error {
	if errors.Is(err, federation.ErrNotReady) {
		return &attest.Error{Kind: attest.ErrUnavailable, Reason: "bundle_unavailable", Detail: err.Error()}
	}
	return attest.Invalid(reason, err.Error())
}

func identity(id spiffeid.ID) attest.Identity {
	var segments []any
	for _, s := range strings.Split(strings.TrimPrefix(id.Path(), "/"), "/") {
		if s != "" {
			segments = append(segments, s)
		}
	}
	return attest.Identity{
		Kind:     Kind,
		Provider: id.TrustDomain().Name(),
		Issuer:   id.TrustDomain().IDString(),
		Subject:  id.String(),
		Attributes: map[string]any{
			"trust_domain": id.TrustDomain().Name(),
			"path":         id.Path(),
			"segments":     segments,
		},
	}
}
