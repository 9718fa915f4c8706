package aws

import (
	"context"
	"sync/atomic"

	"github.com/mcpsts/mcpsts/attest"
)

// Switch verifies AWS evidence with the attestor in force, which Set can
// change while it serves (AWS trusted through an admin API, hot-reloaded);
// with none it refuses (aws_not_trusted). It is safe for concurrent use.
type Switch struct {
	a atomic.Pointer[attest.Attestor]
}

// Set puts a in force; nil takes AWS out.
func (s *Switch) Set(a attest.Attestor) {
	if a == nil {
		s.a.Store(nil)
		return
	}
	s.a.Store(&a)
}

// Attest implements attest.Attestor.
func (s *Switch) Attest(ctx context.Context, ev attest.Evidence) (attest.Identity, error) {
	a := s.a.Load()
	if a == nil {
		return attest.Identity{}, attest.Invalid("aws_not_trusted", "no AWS provider is configured")
	}
	return (*a).Attest(ctx, ev)
}
