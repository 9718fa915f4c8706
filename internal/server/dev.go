package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/internal/devpki"
)

// The demo of serve --dev: the development identity's subject, and the
// MCP server (examples/mcp-server at its default address) that the sample
// trust map lets it get tokens for.
const (
	DevSubject      = "demo-agent"
	DevDemoAudience = "https://127.0.0.1:9443/mcp"
	DevDemoMapFile  = "dev-demo.yaml"
)

// devDemoMap is written into <data>/trustmaps when serve --dev makes that
// directory: an example to edit.
const devDemoMap = `# A sample trust map, written by "mcpsts serve --dev" on its first start.
# Edit it: the server reads the files of this directory again within 5 s
# and keeps the last version that compiles (a broken edit is logged).
#
# It lets the development workload identity (provider "dev": what
# "mcpsts token --dev" signs as) get tokens, as MCP client demo-agent, for
# the demo MCP server of examples/mcp-server.
id: dev-demo
match:
  provider: dev
  subject: ` + DevSubject + `                 # mcpsts token --dev --subject NAME
grant:
  client_id: demo-agent
  audiences: ["` + DevDemoAudience + `"]   # go run ./examples/mcp-server (its default address)
  scopes: [files:read, files:write]
  default_scopes: [files:read]        # what a request that names no scope gets
  max_ttl: 15m
`

// DevDemoMapFor is the sample map with audience in place of the demo
// server's: a walk-through on other ports (tests).
func DevDemoMapFor(audience string) string {
	return strings.ReplaceAll(devDemoMap, DevDemoAudience, audience)
}

// DevClientID is the MCP client serve --dev registers for the browser
// flow: examples/mcp-client signs people in as it, on a loopback redirect.
const DevClientID = "demo-app"

// devClient registers the demo client unless it is there already.
func devClient(ctx context.Context, clients *storeClients) error {
	c, ok, _ := clients.Client(ctx, DevClientID)
	if ok && c.ID == DevClientID {
		return nil
	}
	return clients.RegisterClient(ctx, exchange.Client{ID: DevClientID, Name: "mcpsts demo app (examples/mcp-client)",
		GrantTypes: []string{exchange.GrantAuthorizationCode}, RedirectURIs: []string{"http://127.0.0.1/callback"}})
}

// DevPeopleMapFile is the sample map of the people of the development
// login.
const DevPeopleMapFile = "dev-people.yaml"

// devPeopleMap lets anyone who signs in at the development login let any
// MCP client act for them at the demo server, once they consent.
const devPeopleMap = `# A sample trust map for people, written by "mcpsts serve --dev" on its
# first start. The development login (a page that believes any user name)
# signs people in as provider "dev-login"; this map lets any MCP client
# they consent to get tokens for them at the demo MCP server.
id: dev-people
match:
  provider: dev-login
  subject_pattern: ".+"
grant:
  client_id_expr: request.client_id   # the client of the browser flow
  audiences: ["` + DevDemoAudience + `"]
  scopes: [files:read, files:write]
  default_scopes: [files:read]
  max_ttl: 15m
`

// devIdentity trusts the development provider, whose key is made in the
// data directory on first use.
func devIdentity(cfg *config.Config) error {
	jwks, err := devpki.EnsureIdentityKey(cfg.DataDir)
	if err != nil {
		return err
	}
	cfg.Providers = append(cfg.Providers, config.Provider{Name: config.DevProvider, Issuer: config.DevIssuer, JWKS: string(jwks)})
	return nil
}

// devTrustMaps makes <data>/trustmaps, with the sample map when the
// directory is new (a map the developer removed stays removed).
func devTrustMaps(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, "trustmaps")
	_, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("data directory %s: %w", dataDir, err)
		}
		for name, doc := range map[string]string{DevDemoMapFile: devDemoMap, DevPeopleMapFile: devPeopleMap} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o600); err != nil {
				return "", fmt.Errorf("data directory %s: %w", dataDir, err)
			}
		}
	case err != nil:
		return "", fmt.Errorf("data directory %s: %w", dataDir, err)
	}
	return dir, nil
}
