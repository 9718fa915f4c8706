package exchange

import "net/http"

// GrantTypes lists the grant types of a token endpoint's dispatch table,
// for the decision matrix to check that it covers every one.
func GrantTypes(h http.Handler) []string {
	var out []string
	for gt := range h.(*tokenEndpoint).grants {
		out = append(out, gt)
	}
	return out
}
