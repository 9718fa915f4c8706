package exchange

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Metadata is the authorization server metadata (RFC 8414), also served as
// the OpenID Connect discovery document so that both agree (RFC 9068 §4).
// A field is set only when this server implements what it advertises;
// empty fields are left out of the document.
type Metadata struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint         string   `json:"token_endpoint,omitempty"`
	JWKSURI               string   `json:"jwks_uri,omitempty"`
	RegistrationEndpoint  string   `json:"registration_endpoint,omitempty"`
	ScopesSupported       []string `json:"scopes_supported,omitempty"`
	// ResponseTypesSupported is required by RFC 8414 §2: always present,
	// empty while the authorization endpoint serves no flow.
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported,omitempty"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	RevocationEndpoint                         string   `json:"revocation_endpoint,omitempty"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint,omitempty"`
	IntrospectionEndpointAuthMethodsSupported  []string `json:"introspection_endpoint_auth_methods_supported,omitempty"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported,omitempty"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported,omitempty"`
	TLSClientCertificateBoundAccessTokens      bool     `json:"tls_client_certificate_bound_access_tokens,omitempty"`
	DPoPSigningAlgValuesSupported              []string `json:"dpop_signing_alg_values_supported,omitempty"`
	AuthorizationResponseISSParameterSupported bool     `json:"authorization_response_iss_parameter_supported,omitempty"`
	ClientIDMetadataDocumentSupported          bool     `json:"client_id_metadata_document_supported,omitempty"`
	// IdentityChainingRequestedTokenTypesSupported names the token types a
	// token exchange may ask for across trust domains: the ID-JAG when this
	// server issues them (SEP-990; draft-ietf-oauth-identity-chaining).
	IdentityChainingRequestedTokenTypesSupported []string `json:"identity_chaining_requested_token_types_supported,omitempty"`
}

// Paths are where an issuer's well-known documents live on its host.
type Paths struct {
	// OAuth is the RFC 8414 document: the well-known name inserted between
	// host and path (§3.1).
	OAuth string
	// OIDC is the OpenID Connect discovery document: appended to the path.
	OIDC string
	// JWKS is where the signing keys are published, under the issuer path.
	JWKS string
	// Token is the token endpoint.
	Token string
	// Authorize is the authorization endpoint.
	Authorize string
	// Base is the issuer's path without a trailing slash ("" at the root).
	Base string
	// Origin is the issuer's scheme and host: Origin + a path is a URL.
	Origin string
}

// PathsFor derives the well-known paths of issuer, an https URL without
// query or fragment.
func PathsFor(issuer string) (Paths, error) {
	u, err := url.Parse(issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return Paths{}, fmt.Errorf("exchange: issuer %q is not an https URL without query or fragment", issuer)
	}
	if strings.ContainsAny(u.Path, "{}") {
		return Paths{}, fmt.Errorf("exchange: issuer path %q may not hold braces", u.Path)
	}
	base := strings.TrimSuffix(u.EscapedPath(), "/")
	return Paths{
		OAuth:     "/.well-known/oauth-authorization-server" + base,
		OIDC:      base + "/.well-known/openid-configuration",
		JWKS:      base + "/.well-known/jwks.json",
		Token:     base + "/token",
		Authorize: base + "/authorize",
		Base:      base,
		Origin:    u.Scheme + "://" + u.Host,
	}, nil
}

// MetadataHandler serves m as JSON. The document is built once; m.Issuer
// must be the issuer the serving paths were derived from.
func MetadataHandler(m Metadata) (http.Handler, error) {
	if m.Issuer == "" {
		return nil, fmt.Errorf("exchange: metadata without an issuer")
	}
	if m.ResponseTypesSupported == nil {
		m.ResponseTypesSupported = []string{}
	}
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("exchange: marshal metadata: %w", err)
	}
	body = append(body, '\n')
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(body)
	}), nil
}

// AuthorizeHandler is the authorization endpoint of a server that has no
// browser flow yet: every request is refused with unsupported_response_type
// and never redirected (no client has a registered redirect URI, so none
// may be redirected to, RFC 6749 §4.1.2.1). Metadata names it, with an
// empty response_types_supported, because MCP clients (the TypeScript SDK)
// refuse authorization server metadata without one.
func AuthorizeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fail(http.StatusBadRequest, "unsupported_response_type",
			"this authorization server has no browser flow: workloads get tokens with token exchange, JWT bearer or client credentials at the token endpoint"), "")
	})
}
