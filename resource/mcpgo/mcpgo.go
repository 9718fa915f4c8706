// Package mcpgo connects the resource package to the official MCP Go SDK
// (github.com/modelcontextprotocol/go-sdk): it hands the verified caller to
// the SDK as its auth.TokenInfo, so the SDK binds every session to the
// caller that opened it (a session ID alone never authenticates), and gives
// tool handlers the caller back, for authorization and Delegate.
package mcpgo

import (
	"context"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpsts/mcpsts/resource"
)

// callerKey names the caller in auth.TokenInfo.Extra.
const callerKey = "mcpsts.resource.caller"

// placeholder stands in the Authorization header for the SDK's bearer
// middleware, which wants one: resource.Middleware removed the real token
// so that no handler can forward it. It is not a credential.
const placeholder = "Bearer verified-by-mcpsts-resource"

// Handler wraps an SDK handler (mcp.NewStreamableHTTPHandler) that sits
// behind resource.Middleware. Requests without a verified caller get 401.
func Handler(next http.Handler) http.Handler {
	inner := auth.RequireBearerToken(func(ctx context.Context, _ string, _ *http.Request) (*auth.TokenInfo, error) {
		c, ok := resource.CallerFromContext(ctx)
		if !ok {
			return nil, auth.ErrInvalidToken
		}
		return &auth.TokenInfo{
			UserID:     c.Claims.Principal(),
			Scopes:     c.Claims.Scopes,
			Expiration: c.Claims.ExpiresAt,
			Extra:      map[string]any{callerKey: c},
		}, nil
	}, nil)(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", placeholder)
		inner.ServeHTTP(w, r)
	})
}

// Caller returns the verified caller of a tool call (req.Extra of a
// CallToolRequest and the like).
func Caller(extra *mcp.RequestExtra) (*resource.Caller, bool) {
	if extra == nil || extra.TokenInfo == nil {
		return nil, false
	}
	c, ok := extra.TokenInfo.Extra[callerKey].(*resource.Caller)
	return c, ok && c != nil
}

// Context returns ctx carrying the caller of extra, so that
// resource.Delegate and resource.CallerFromContext work in a tool handler.
func Context(ctx context.Context, extra *mcp.RequestExtra) context.Context {
	if c, ok := Caller(extra); ok {
		return resource.WithCaller(ctx, c)
	}
	return ctx
}
