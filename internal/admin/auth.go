package admin

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/issuer"
)

// Scope is the scope an access token needs for the admin API.
const Scope = "mcpsts:admin"

// Authorizer decides whether a request may use the admin API. It returns
// the principal (for logs and audit), ErrUnauthenticated when the request
// proves no identity this authorizer accepts, or ErrForbidden when it does
// but that identity is not an administrator.
type Authorizer interface {
	Authorize(r *http.Request) (principal string, err error)
}

// Errors of Authorize.
var (
	ErrUnauthenticated = errors.New("admin: unauthenticated")
	ErrForbidden       = errors.New("admin: not an administrator")
	// ErrUnavailable: the caller cannot be checked now (the revocation
	// list cannot be read); the answer is 503.
	ErrUnavailable = errors.New("admin: the caller cannot be checked now")
)

// Acceptor is the broker's one acceptance of its own access tokens
// (signature, audience, holder, revocation, single use); *exchange.Acceptor
// is one.
type Acceptor interface {
	Accept(ctx context.Context, raw string, want exchange.Acceptance) (issuer.VerifiedToken, error)
}

// TokenAuth accepts access tokens minted by this broker for Audience that
// carry the admin scope: an operator's CI gets one through a trust map that
// grants it, never through a shared secret. A certificate-bound token is
// accepted only over a connection that presents its certificate, a
// DPoP-bound one never (the admin API takes no proofs), a revoked one never
// (read through the acceptor's cache, at most its CacheFor late), a
// single-use one once.
type TokenAuth struct {
	Acceptor Acceptor
	Audience string
}

// Authorize implements Authorizer.
func (a TokenAuth) Authorize(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	scheme, raw, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || raw == "" {
		return "", ErrUnauthenticated
	}
	var peer []*x509.Certificate
	if r.TLS != nil {
		peer = r.TLS.PeerCertificates
	}
	v, err := a.Acceptor.Accept(r.Context(), strings.TrimSpace(raw),
		exchange.Acceptance{Audience: a.Audience, Holder: true, Peer: peer, UseOnce: exchange.UseAccess})
	switch {
	case errors.Is(err, exchange.ErrNotAccepted):
		return "", fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	case err != nil:
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !v.HasScope(Scope) {
		return "", ErrForbidden
	}
	return "token:" + v.ClientID + ":" + v.Subject, nil
}

// CertAuth accepts TLS client certificates that chain to Roots, naming
// (by a URI SAN such as a SPIFFE ID, or by common name) one of Names.
type CertAuth struct {
	Roots *x509.CertPool
	Names []string
}

// Authorize implements Authorizer.
func (a CertAuth) Authorize(r *http.Request) (string, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || a.Roots == nil {
		return "", ErrUnauthenticated
	}
	leaf := r.TLS.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: a.Roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", ErrUnauthenticated
	}
	names := []string{leaf.Subject.CommonName}
	for _, u := range leaf.URIs {
		names = append([]string{u.String()}, names...)
	}
	for _, n := range names {
		if n != "" && slices.Contains(a.Names, n) {
			return "cert:" + n, nil
		}
	}
	return "", ErrForbidden
}

// AnyOf accepts a request that one of its authorizers accepts; it is
// forbidden if one recognised the caller but refused it.
type AnyOf []Authorizer

// Authorize implements Authorizer.
func (as AnyOf) Authorize(r *http.Request) (string, error) {
	err := ErrUnauthenticated
	for _, a := range as {
		p, e := a.Authorize(r)
		if e == nil {
			return p, nil
		}
		if errors.Is(e, ErrForbidden) || errors.Is(e, ErrUnavailable) && !errors.Is(err, ErrForbidden) {
			err = e
		}
	}
	return "", err
}
