package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/federation/federationtest"
)

// TestServeTrustsProviders: configured providers load their keys in the
// background; one whose issuer is down does not stop the server.
func TestServeTrustsProviders(t *testing.T) {
	cert, key, caFile := productionFiles(t)
	is := federationtest.NewIssuer(t)
	ca := filepath.Join(t.TempDir(), "issuer-ca.pem")
	os.WriteFile(ca, is.CAPEM(), 0o600)
	pinned := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(pinned, is.JWKS(), 0o600)
	file := writeConfig(t, fmt.Sprintf(`
issuer: https://sts.example.com
listen: 127.0.0.1:0
data_dir: %s
tls: {cert_file: %s, key_file: %s}
providers:
  - name: ci
    issuer: %s
    discovery: true
    ca_file: %s
    preset: github-actions
  - name: cluster
    issuer: https://kubernetes.default.svc.cluster.local
    jwks_file: %s
    preset: kubernetes
  - name: down
    issuer: https://127.0.0.1:1
    discovery: true
`, t.TempDir(), cert, key, is.URL, ca, pinned))
	s := startServe(t, testEnv(nil), "--config", file)
	deadline := time.Now().Add(10 * time.Second)
	for is.Requests("jwks") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("provider ci did not fetch its keys within 10s\n%s", s.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for !strings.Contains(s.stderr.String(), "issuer keys unreachable: provider not ready") {
		if time.Now().After(deadline) {
			t.Fatalf("no log line for the unreachable provider:\n%s", s.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	md := map[string]any{}
	resp, body := get(t, clientTrusting(t, caFile), "https://"+s.addr+"/.well-known/oauth-authorization-server")
	json.Unmarshal([]byte(body), &md)
	if resp.StatusCode != 200 || fmt.Sprint(md["token_endpoint_auth_methods_supported"]) != "[none private_key_jwt tls_client_auth]" ||
		fmt.Sprint(md["token_endpoint_auth_signing_alg_values_supported"]) != "[RS256 ES256]" {
		t.Errorf("metadata with providers: %v", md)
	}
	for _, name := range []string{"ci", "cluster", "down"} {
		if !strings.Contains(s.stderr.String(), `msg="trusting provider" provider=`+name) {
			t.Errorf("no start-up line for provider %s", name)
		}
	}
}

func TestServeProviderErrors(t *testing.T) {
	cert, key, _ := productionFiles(t)
	badJWKS := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(badJWKS, []byte(`{"keys":[]}`), 0o600)
	file := writeConfig(t, fmt.Sprintf(`
issuer: https://sts.example.com
listen: 127.0.0.1:0
tls: {cert_file: %s, key_file: %s}
providers:
  - name: cluster
    issuer: https://kubernetes.default.svc.cluster.local
    jwks_file: %s
`, cert, key, badJWKS))
	_, _, err := run(t, testEnv(nil), "serve", "--config", file)
	if err == nil || !strings.Contains(err.Error(), "providers[0] (cluster): federation: provider \"cluster\": jwks: no public signature keys") {
		t.Fatalf("serve with an empty pinned key set = %v", err)
	}
}
