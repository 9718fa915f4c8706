package exchange

import (
	"context"
	"errors"
	"net/http"

	"go.opentelemetry.io/otel/attribute"

	"github.com/mcpsts/mcpsts/dpop"
)

// DPoP at the token endpoint (RFC 9449): a request with a DPoP proof gets a
// token bound to the proof's key (cnf.jkt, token_type DPoP), with every
// grant; a trust map with require_binding: dpop refuses requests without
// one. The proof is verified once, before the grant, and its jti claimed
// in the store's replay cache, so on every replica.

// Errors of RFC 9449 §5 and §8.
const (
	errInvalidDPoPProof = "invalid_dpop_proof"
	errUseDPoPNonce     = "use_dpop_nonce"
)

// proofKey carries the request's verified proof to mint.
type proofKey struct{}

// verifyProof verifies the request's DPoP header, if it has one.
func (t *tokenEndpoint) verifyProof(ctx context.Context, r *http.Request) (context.Context, *oauthError) {
	headers := r.Header.Values(dpop.Header)
	if t.cfg.DPoP == nil || len(headers) == 0 {
		return ctx, nil
	}
	p, err := t.cfg.DPoP.Verify(ctx, headers, dpop.Check{Method: r.Method, URL: t.cfg.TokenURL})
	switch {
	case errors.Is(err, dpop.ErrUseNonce):
		e := fail(http.StatusBadRequest, errUseDPoPNonce, "the DPoP proof must carry the nonce of the DPoP-Nonce header")
		e.check, e.nonce = "dpop_nonce", t.cfg.DPoP.Nonces.Nonce()
		return ctx, e
	case errors.Is(err, dpop.ErrInvalidProof):
		e := fail(http.StatusBadRequest, errInvalidDPoPProof, truncate(err.Error()))
		e.check, e.detail = "dpop_proof", err.Error()
		return ctx, e
	case err != nil:
		return ctx, storeUnavailable(err)
	}
	annotate(ctx, attribute.String(attrDPoPJKT, p.JKT))
	return context.WithValue(ctx, proofKey{}, p), nil
}

// proofOf is the request's verified proof.
func proofOf(ctx context.Context) (dpop.Proof, bool) {
	p, ok := ctx.Value(proofKey{}).(dpop.Proof)
	return p, ok
}

// boundProof refuses a request for a grant bound to a DPoP key (a code's
// dpop_jkt, a refresh token issued with a proof) without a proof of that
// key.
func boundProof(ctx context.Context, jkt, what string) *oauthError {
	if jkt == "" {
		return nil
	}
	if p, ok := proofOf(ctx); !ok || p.JKT != jkt {
		e := fail(http.StatusBadRequest, errInvalidDPoPProof, "the "+what+" is bound to a DPoP key: send a proof of that key")
		e.check = "dpop_key_mismatch"
		return e
	}
	return nil
}
