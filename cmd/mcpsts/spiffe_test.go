package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/mcpsts/mcpsts/federation/federationtest"
)

// TestServeSPIFFEClient: a workload with an X.509-SVID authenticates over
// mTLS to the running server (tls_client_auth) and gets a certificate-bound
// token; the metadata says so.
func TestServeSPIFFEClient(t *testing.T) {
	cert, key, ca := productionFiles(t)
	prod := federationtest.NewTrustDomain("prod.example.org")
	bundle := filepath.Join(t.TempDir(), "prod.json")
	raw, _ := prod.Bundle().Marshal()
	os.WriteFile(bundle, raw, 0o600)
	maps := t.TempDir()
	os.WriteFile(filepath.Join(maps, "m.yaml"), []byte(`id: agent
match: {provider: prod.example.org, subject: "spiffe://prod.example.org/agent"}
grant: {client_id: agent, audiences: ["https://mcp.example.com/mcp"], require_binding: mtls}
`), 0o600)
	file := writeConfig(t, fmt.Sprintf(`
issuer: https://sts.example.com
listen: 127.0.0.1:0
data_dir: %s
tls: {cert_file: %s, key_file: %s}
spiffe:
  trust_domains:
    - {name: prod.example.org, bundle_file: %s}
trust_maps: {paths: [%s]}
`, t.TempDir(), cert, key, bundle, maps))
	s := startServe(t, testEnv(nil), "--config", file)
	c := clientTrusting(t, ca)
	chain, svidKey := prod.X509SVID("/agent", federationtest.SVIDOptions{})
	c.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{chain[0].Raw}, PrivateKey: svidKey}}
	resp, err := c.PostForm("https://"+s.addr+"/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"agent"}})
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("tls_client_auth through the server: %d %v", resp.StatusCode, body)
	}
	_, md := get(t, c, "https://"+s.addr+"/.well-known/oauth-authorization-server")
	var doc map[string]any
	json.Unmarshal([]byte(md), &doc)
	if fmt.Sprint(doc["token_endpoint_auth_methods_supported"]) != "[none tls_client_auth]" || doc["tls_client_certificate_bound_access_tokens"] != true {
		t.Fatalf("metadata %v", doc)
	}
}
