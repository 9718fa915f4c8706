package resource

import (
	"context"
	"fmt"
	"strings"
)

// The settings both shipped edges (mcpsts gateway and examples/mcp-server)
// take from their command lines, read in one place.

// DPoP modes of an edge.
const (
	DPoPOff     = "off"     // bearer and certificate-bound tokens only
	DPoPAccept  = "accept"  // DPoP-bound tokens too (the default)
	DPoPRequire = "require" // DPoP-bound tokens only
)

// DPoPMode returns the Config.DPoP of a mode ("" is DPoPAccept).
func DPoPMode(mode string) (*DPoP, error) {
	switch mode {
	case DPoPAccept, "":
		return &DPoP{}, nil
	case DPoPRequire:
		return &DPoP{Required: true}, nil
	case DPoPOff:
		return nil, nil
	}
	return nil, fmt.Errorf("resource: DPoP mode %q: want %s, %s or %s", mode, DPoPOff, DPoPAccept, DPoPRequire)
}

// BrokerIntrospection is the Config.Introspection of an edge that asks the
// broker at issuer (its introspection endpoint, issuer + "/introspect",
// as the broker's metadata names it) whether each token is still active,
// authenticated with the edge's own workload credential, which assertion
// returns afresh for every request. Revoked tokens are then refused within
// Introspection.CacheFor, and single-use tokens once.
func BrokerIntrospection(issuer string, assertion func(ctx context.Context) (string, error)) *Introspection {
	return &Introspection{URL: strings.TrimSuffix(issuer, "/") + "/introspect", Assertion: assertion}
}
