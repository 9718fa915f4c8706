package resource

import (
	"encoding/json"
	"net/http"
)

// metadata is the RFC 9728 protected resource metadata document.
type metadata struct {
	Resource                          string   `json:"resource"`
	AuthorizationServers              []string `json:"authorization_servers"`
	ScopesSupported                   []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported            []string `json:"bearer_methods_supported"`
	ResourceName                      string   `json:"resource_name,omitempty"`
	TLSClientCertificateBoundTokens   bool     `json:"tls_client_certificate_bound_access_tokens"`
	DPoPSigningAlgValuesSupported     []string `json:"dpop_signing_alg_values_supported,omitempty"`
	DPoPBoundAccessTokensRequired     bool     `json:"dpop_bound_access_tokens_required,omitempty"`
	ResourceSigningAlgValuesSupported []string `json:"-"` // this server signs no responses
}

func (s *Server) buildMetadata() []byte {
	b, _ := json.Marshal(metadata{
		Resource:                        s.cfg.Resource,
		AuthorizationServers:            []string{s.cfg.Issuer},
		ScopesSupported:                 s.supported,
		BearerMethodsSupported:          []string{"header"},
		ResourceName:                    s.cfg.ResourceName,
		TLSClientCertificateBoundTokens: true,
		DPoPSigningAlgValuesSupported:   s.proofAlgs,
		DPoPBoundAccessTokensRequired:   s.cfg.DPoP != nil && s.cfg.DPoP.Required,
	})
	return b
}

// MetadataURL is the path-inserted URL of this server's metadata (RFC 9728
// §3.1), the one the challenges name.
func (s *Server) MetadataURL() string { return s.metaURL }

// MetadataHandler serves the protected resource metadata to anyone (it is
// public): GET or HEAD, JSON, cacheable for an hour.
func (s *Server) MetadataHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Write(s.metadata)
	})
}

// Mount registers on mux the MCP handler at the resource's path, protected
// by the middleware with scopes, and the metadata at both well-known
// locations: path-inserted for the MCP endpoint, and the root.
func (s *Server) Mount(mux *http.ServeMux, mcp http.Handler, scopes ...string) {
	path := s.metaPath[len(wellKnown):]
	if path == "" {
		path = "/"
	}
	mux.Handle(path, s.Middleware(mcp, scopes...))
	mux.Handle(s.metaPath, s.MetadataHandler())
	if s.metaPath != wellKnown {
		mux.Handle(wellKnown, s.MetadataHandler())
	}
}
