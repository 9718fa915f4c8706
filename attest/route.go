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
	if parts := strings.Split(string(ev.Token), "."); len(parts) == 3 {
		if raw, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			json.Unmarshal(raw, &claims)
		}
	}
	if r.SPIFFE != nil && !r.OIDC.Trusts(claims.Iss) && strings.HasPrefix(claims.Sub, "spiffe://") {
		return r.SPIFFE.Attest(ctx, ev)
	}
	return r.OIDC.Attest(ctx, ev)
}
