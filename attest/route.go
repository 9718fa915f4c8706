package attest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
)

// IssuerTruster is an attestor that knows which issuers it trusts.
type IssuerTruster interface {
	Attestor
	Trusts(iss string) bool
}

// JWTRouter sends a JWT to the attestor that can verify it: to OIDC when
// its issuer is a trusted OIDC issuer; to SPIFFE when its subject is a
// SPIFFE ID (JWT-SVIDs need not carry iss, and are verified by their trust
// domain's bundle); otherwise to OIDC, which refuses it. The routing reads
// the claims unverified; the chosen attestor verifies everything.
type JWTRouter struct {
	OIDC   IssuerTruster
	SPIFFE Attestor // nil: no SPIFFE trust domains
}

// Attest implements Attestor.
func (r JWTRouter) Attest(ctx context.Context, ev Evidence) (Identity, error) {
	var claims struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
	}
	UnverifiedSegment(string(ev.Token), 1, &claims)
	if r.SPIFFE != nil && !r.OIDC.Trusts(claims.Iss) && strings.HasPrefix(claims.Sub, "spiffe://") {
		return r.SPIFFE.Attest(ctx, ev)
	}
	return r.OIDC.Attest(ctx, ev)
}

// UnverifiedSegment decodes the JSON of part i (0: the header, 1: the
// payload) of a compact JWS into v, verifying nothing: for routing a token
// to what verifies it, never for a decision. Whatever does not decode
// leaves v as it was.
func UnverifiedSegment(token string, i int, v any) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || i < 0 || i > 1 {
		return
	}
	if raw, err := base64.RawURLEncoding.DecodeString(parts[i]); err == nil {
		json.Unmarshal(raw, v)
	}
}
