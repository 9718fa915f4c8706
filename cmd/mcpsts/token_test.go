package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/federation/federationtest"
)

// TestTokenExchangeEndToEnd runs the configured server with a trusted
// provider and a trust map file, and exchanges a platform token over HTTPS.
func TestTokenExchangeEndToEnd(t *testing.T) {
	cert, key, ca := productionFiles(t)
	idp := federationtest.NewIssuer(t)
	idpCA := filepath.Join(t.TempDir(), "idp.pem")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	maps := t.TempDir()
	os.WriteFile(filepath.Join(maps, "ci.yaml"), []byte(`id: ci
match: {provider: ci, subject: "repo:org/app:ref:refs/heads/main"}
grant: {client_id: app-ci, audiences: ["https://mcp.example.com/mcp"], scopes: [read], default_scopes: [read]}
`), 0o600)
	file := writeConfig(t, fmt.Sprintf(`
issuer: https://sts.example.com
listen: 127.0.0.1:0
data_dir: %s
tls: {cert_file: %s, key_file: %s}
providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}
trust_maps: {paths: [%s]}
`, t.TempDir(), cert, key, idp.URL, idpCA, maps))
	s := startServe(t, testEnv(nil), "--config", file)
	c := clientTrusting(t, ca)

	n := time.Now().Unix()
	subject := idp.Sign(map[string]any{"iss": idp.URL, "sub": "repo:org/app:ref:refs/heads/main", "aud": "https://sts.example.com/token", "iat": n, "exp": n + 300}, nil)
	resp, err := c.PostForm("https://"+s.addr+"/token", url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {subject},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {"https://mcp.example.com/mcp"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 200 || body["token_type"] != "Bearer" || body["scope"] != "read" {
		t.Fatalf("token exchange = %d %v\n%s", resp.StatusCode, body, s.stderr)
	}
	if strings.Contains(s.stderr.String(), subject) || strings.Contains(s.stderr.String(), body["access_token"].(string)) {
		t.Fatal("a token appears in the log")
	}
}

// TestTokenHelpListsSources: mcpsts token --help names every evidence
// source, with the environment each reads, and --dev.
func TestTokenHelpListsSources(t *testing.T) {
	out, _, err := run(t, testEnv(nil), "token", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for source, env := range map[string][]string{
		"auto":        nil,
		"k8s":         {"MCPSTS_K8S_TOKEN_FILE", "/var/run/secrets/mcpsts/token"},
		"github":      {"ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"},
		"spiffe":      {"SPIFFE_ENDPOINT_SOCKET"},
		"spiffe-mtls": {"SPIFFE_ENDPOINT_SOCKET"},
		"aws":         {"AWS_ACCESS_KEY_ID", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_REGION", "MCPSTS_AWS_STS_ENDPOINT"},
		"gcp":         {"GCE_METADATA_HOST", "MCPSTS_GCP_IMPERSONATE"},
		"azure":       {"AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_ID", "IDENTITY_ENDPOINT", "MCPSTS_AZURE_APP"},
		"file:PATH":   nil,
		"--dev":       {"--data", "--subject"},
	} {
		if !regexp.MustCompile(`(?m)^  `+regexp.QuoteMeta(source)+`\s`).MatchString(out) && !strings.Contains(out, source+" is the development identity") {
			t.Errorf("--help does not list %s", source)
		}
		for _, v := range env {
			if !strings.Contains(out, v) {
				t.Errorf("--help does not say that %s reads %s", source, v)
			}
		}
	}
}
