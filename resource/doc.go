// Package resource is what an MCP server imports to accept access tokens
// minted by mcpsts, and nothing else: it verifies the bearer token of every
// request (signature against the broker's published keys, typ at+jwt, iss,
// an aud equal to this server, lifetime, the scopes the route or MCP tool
// needs, the cnf binding), answers failures with the challenges the MCP
// authorization spec prescribes, serves the RFC 9728 protected resource
// metadata, and gives handlers the verified caller.
//
// There is no API that returns the incoming token: an MCP server that must
// call another one does so through [Delegate], a delegation token exchange
// that records the server as the actor.
//
// Of this module, resource imports only federation, for its JWKS cache
// (discovery, bounded refresh, rate-limited refetch on an unknown kid,
// stale-if-error): one implementation serves the broker and the servers.
package resource
