// Package exchange is the OAuth HTTP surface of mcpsts: the token endpoint and
// its grants, authorization server metadata, and the mapping of internal
// errors to OAuth error codes.
//
// It declares the small interfaces it needs from storage where it uses them;
// internal/store implements them.
package exchange
