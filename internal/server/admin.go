package server

import (
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/mcpsts/mcpsts/internal/admin"
	"github.com/mcpsts/mcpsts/internal/config"
)

// adminAuthorizer accepts broker tokens for the admin audience with the
// admin scope and, when configured, administrators' client certificates.
func adminAuthorizer(cfg *config.Config, issuerURL string, accept admin.Acceptor) (admin.Authorizer, error) {
	audience := cfg.Admin.Audience
	if audience == "" {
		audience = strings.TrimSuffix(issuerURL, "/") + "/admin"
	}
	auth := admin.AnyOf{admin.TokenAuth{Acceptor: accept, Audience: audience}}
	if f := cfg.Admin.ClientCAFile; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("admin.client_ca_file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("admin.client_ca_file %s: no PEM certificates", f)
		}
		auth = append(auth, admin.CertAuth{Roots: roots, Names: cfg.Admin.ClientNames})
	}
	return auth, nil
}
