package oidc

import (
	"context"
	"sync/atomic"

	"github.com/mcpsts/mcpsts/attest"
)

// Set verifies with a set of providers that can change while it serves:
// fixed ones (a configuration file's) and others put in force by Swap (an
// admin API's, hot-reloaded). It is safe for concurrent use; a Swap takes
// effect for the next Attest.
type Set struct {
	opts  Options
	fixed []ProviderConfig
	v     atomic.Pointer[Verifier]
}

// NewSet makes a set of the fixed providers.
func NewSet(opts Options, fixed ...ProviderConfig) (*Set, error) {
	s := &Set{opts: opts, fixed: fixed}
	if err := s.Swap(nil); err != nil {
		return nil, err
	}
	return s, nil
}

// Swap puts in force the fixed providers and others. On an error (two
// providers with one issuer, a bad configuration) the set is unchanged. A
// new verifier starts with an empty verified-token cache.
func (s *Set) Swap(others []ProviderConfig) error {
	v, err := NewVerifier(s.opts, append(append([]ProviderConfig(nil), s.fixed...), others...)...)
	if err != nil {
		return err
	}
	s.v.Store(v)
	return nil
}

// Attest implements attest.Attestor with the providers in force.
func (s *Set) Attest(ctx context.Context, ev attest.Evidence) (attest.Identity, error) {
	return s.v.Load().Attest(ctx, ev)
}

// Trusts reports whether iss is the issuer of a provider in force.
func (s *Set) Trusts(iss string) bool { return s.v.Load().Trusts(iss) }
