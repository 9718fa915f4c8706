// Package federation keeps the keys of the external issuers mcpsts trusts:
// one Provider per configured issuer, whose keys come from OIDC discovery,
// a configured jwks_uri, or a pinned key set. Remote key sets are cached
// with bounded refresh, rate-limited refetch on an unknown kid, and
// stale-if-error with a bound; every fetch goes through a hardened client.
//
// It knows nothing of MCP, clients or scopes.
package federation
