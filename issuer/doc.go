// Package issuer mints the access tokens MCP servers trust: RFC 9068 JWTs,
// each bound to exactly one audience, signed with keys whose lifecycle
// (pending → active → retired → removed) it manages in a shared KeyStore,
// and published as a JWKS.
//
// The issuer signs what it is told, within its own hard limits: one
// audience, a lifetime of at most MaxTokenLifetime, no reserved claim
// overridden, workload subjects in their own namespace.
package issuer
