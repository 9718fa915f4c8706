// Package trustmaps is the policy engine: trust maps say which verified
// workload identities may act as which MCP client, with which scopes, for
// which MCP servers, under which conditions. Deny by default: a request is
// granted only by a map whose match, conditions and grant all hold.
package trustmaps

import "time"

// Map is one trust map, as written in YAML or JSON.
type Map struct {
	ID          string `yaml:"id" json:"id"`
	Description string `yaml:"description" json:"description,omitempty"`
	// Priority orders the maps: lower first; ties are broken by ID.
	Priority int   `yaml:"priority" json:"priority"`
	Match    Match `yaml:"match" json:"match"`
	Grant    Grant `yaml:"grant" json:"grant"`
}

// Match says which identities a map is about.
type Match struct {
	// Provider is the configured provider or attestor that verified the
	// identity.
	Provider string `yaml:"provider" json:"provider"`
	// Exactly one of Subject (exact) and SubjectPattern (an RE2 expression
	// matched against the whole subject).
	Subject        string `yaml:"subject" json:"subject,omitempty"`
	SubjectPattern string `yaml:"subject_pattern" json:"subject_pattern,omitempty"`
	// Conditions are CEL expressions that must all be true.
	Conditions []string `yaml:"conditions" json:"conditions,omitempty"`
}

// Grant is what a matching identity gets.
type Grant struct {
	// Exactly one of ClientID (literal) and ClientIDExpr (a CEL expression
	// giving a string) names the MCP client the identity acts as.
	ClientID     string `yaml:"client_id" json:"client_id,omitempty"`
	ClientIDExpr string `yaml:"client_id_expr" json:"client_id_expr,omitempty"`
	// Audiences are the canonical resource URIs of the MCP servers the
	// identity may get tokens for, compared exactly.
	Audiences []string `yaml:"audiences" json:"audiences"`
	Scopes    []string `yaml:"scopes" json:"scopes,omitempty"`
	// DefaultScopes are granted when a request names none; a subset of
	// Scopes.
	DefaultScopes []string `yaml:"default_scopes" json:"default_scopes,omitempty"`
	// MaxTTL caps the token lifetime (0: the issuer's default).
	MaxTTL time.Duration `yaml:"max_ttl" json:"max_ttl,omitempty"`
	// Claims are added to the token; reserved claims cannot be set.
	Claims map[string]any `yaml:"claims" json:"claims,omitempty"`
	// RequireBinding is none, mtls or dpop.
	RequireBinding string `yaml:"require_binding" json:"require_binding,omitempty"`
	// SingleUse makes the tokens valid for one use: the first
	// introspection (by a resource server that checks) claims each.
	SingleUse bool `yaml:"single_use" json:"single_use,omitempty"`
	// MayAct lists who may act for this identity in a delegation exchange.
	MayAct []ActorRule `yaml:"may_act" json:"may_act,omitempty"`
	// AuthorizationServers are the issuers of the authorization servers an
	// ID-JAG (SEP-990) for this identity may name, mcpsts itself included
	// when listed: with mcpsts as the identity provider, an ID-JAG is
	// issued only for these, and only for the grant's audiences and scopes.
	AuthorizationServers []string `yaml:"authorization_servers" json:"authorization_servers,omitempty"`
}

// ActorRule names identities allowed to act for another.
type ActorRule struct {
	Provider       string `yaml:"provider" json:"provider"`
	Subject        string `yaml:"subject" json:"subject,omitempty"`
	SubjectPattern string `yaml:"subject_pattern" json:"subject_pattern,omitempty"`
}

// Document is a named source of maps: a file holding one map per YAML
// document, or one JSON map.
type Document struct {
	Name string
	Data []byte
}
