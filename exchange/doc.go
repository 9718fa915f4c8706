// Package exchange is the OAuth HTTP surface of mcpsts: authorization
// server metadata, the token endpoint and its grants, and the mapping of
// internal errors to OAuth error codes.
package exchange
