package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"

	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/internal/awsfake"
)

// serveBroker serves mcpsts from a production config at
// https://127.0.0.1:PORT with one trust map document and section (YAML
// keys beside issuer, listen, data_dir, tls and trust_maps); it returns the
// broker URL and the CA to trust.
func serveBroker(t *testing.T, trustMap, section string) (broker, ca string) {
	t.Helper()
	return serveBrokerEnv(t, testEnv(nil), trustMap, section)
}

// serveBrokerEnv is serveBroker in the environment e.
func serveBrokerEnv(t *testing.T, e env, trustMap, section string) (broker, ca string) {
	t.Helper()
	broker, ca, _ = serveBrokerFile(t, e, trustMap, section)
	return broker, ca
}

// serveBrokerFile is serveBrokerEnv that also returns the configuration
// file, for the command line tools to share.
func serveBrokerFile(t *testing.T, e env, trustMap, section string) (broker, ca, file string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	e.listener = handOver(addr, ln)
	cert, key, ca := productionFiles(t)
	maps := t.TempDir()
	os.WriteFile(filepath.Join(maps, "m.yaml"), []byte(trustMap), 0o600)
	broker = "https://" + addr
	file = writeConfig(t, fmt.Sprintf(`
issuer: %s
listen: %s
data_dir: %s
tls: {cert_file: %s, key_file: %s}
%s
trust_maps: {paths: [%s]}
`, broker, addr, t.TempDir(), cert, key, section, maps))
	startServe(t, e, "--config", file)
	return broker, ca, file
}

// brokerWithProvider serves mcpsts with issuer https://127.0.0.1:PORT, a
// fake IdP trusted as provider "ci" and a trust map for its workload; it
// returns the broker URL, its CA and a file holding the workload's token.
func brokerWithProvider(t *testing.T) (broker, ca, tokenFile string, idp *federationtest.Issuer) {
	t.Helper()
	idp = federationtest.NewIssuer(t)
	idpCA := filepath.Join(t.TempDir(), "idp.pem")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	broker, ca = serveBroker(t, `id: agent
match: {provider: ci, subject: "system:serviceaccount:apps:agent"}
grant: {client_id: agent, audiences: ["https://mcp.example.com/mcp"], scopes: [read, write], default_scopes: [read]}
`, fmt.Sprintf(`providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}`, idp.URL, idpCA))
	n := time.Now().Unix()
	tokenFile = filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(idp.Sign(map[string]any{"iss": idp.URL, "sub": "system:serviceaccount:apps:agent", "aud": broker, "iat": n, "exp": n + 600}, nil)), 0o600)
	return broker, ca, tokenFile, idp
}

func TestTokenCommand(t *testing.T) {
	broker, ca, tokenFile, _ := brokerWithProvider(t)
	base := []string{"token", "--broker", broker, "--ca", ca, "--audience", "https://mcp.example.com/mcp", "--source", "file:" + tokenFile}

	out, stderr, err := run(t, testEnv(nil), base...)
	if err != nil || strings.Count(out, ".") != 2 || strings.Count(out, "\n") != 1 || !strings.Contains(stderr, "evidence source file:") {
		t.Fatalf("token = %q (stderr %q), %v", out, stderr, err)
	}
	out, _, err = run(t, testEnv(nil), append(base, "--json", "--scope", "write")...)
	if err != nil || !strings.Contains(out, `"token_type": "Bearer"`) || !regexp.MustCompile(`"expires_in": (899|900),`).MatchString(out) {
		t.Fatalf("--json = %q, %v", out, err)
	}
	outFile := filepath.Join(t.TempDir(), "at")
	if _, _, err := run(t, testEnv(nil), append(base, "--out", outFile)...); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(outFile); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() < 100 {
		t.Fatalf("--out file: %v %v", fi, err)
	}

	// --exec passes the token and the exit code.
	_, _, err = run(t, testEnv(nil), append(base, "--", "sh", "-c", `test -n "$MCPSTS_TOKEN" && test -s "$MCPSTS_TOKEN_FILE" && exit 7`)...)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 7 {
		t.Fatalf("--exec exit code: %v", err)
	}
	if _, _, err := run(t, testEnv(nil), append(base, "--exec", "--", "sh", "-c", "exit 0")...); err != nil {
		t.Fatalf("--exec success: %v", err)
	}

	// Exit codes, with the failing step and the broker's OAuth error.
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"http broker", []string{"token", "--broker", "http://127.0.0.1:1", "--audience", "https://mcp.example.com/mcp", "--source", "file:" + tokenFile}, exitConfig, "plain http is refused"},
		{"unknown source", append(append([]string{}, base[:len(base)-1]...), "openstack"), exitConfig, "unknown source"},
		{"no credential", append(append([]string{}, base[:len(base)-1]...), "file:/no/token"), exitEvidence, "evidence failed"},
		{"denied", append(append([]string{}, base...), "--scope", "admin"), exitDenied, "exchange failed: invalid_scope"},
		{"other audience", []string{"token", "--broker", broker, "--ca", ca, "--audience", "https://other.example.com/mcp", "--source", "file:" + tokenFile}, exitDenied, "exchange failed: invalid_target"},
		{"unreachable", []string{"token", "--broker", "https://127.0.0.1:1", "--audience", "https://mcp.example.com/mcp", "--source", "file:" + tokenFile}, exitUnreachable, "discovery failed"},
		{"watch without out", append(append([]string{}, base...), "--watch"), exitConfig, "--watch needs --out"},
		{"exec without a command", append(append([]string{}, base...), "--exec"), exitConfig, "--exec needs the command after --"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := run(t, testEnv(nil), tt.args...)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != tt.code || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want exit %d with %q", err, tt.code, tt.want)
			}
		})
	}
}

// TestTokenCommandSPIFFE: the spiffe source gets a JWT-SVID from the
// Workload API, which the broker also reads its bundles from.
func TestTokenCommandSPIFFE(t *testing.T) {
	prod := federationtest.NewTrustDomain("prod.example.org")
	api := federationtest.NewWorkloadAPI(t, prod)
	broker, ca := serveBroker(t, `id: agent
match: {provider: prod.example.org, subject: "spiffe://prod.example.org/mcpsts-agent"}
grant: {client_id: agent, audiences: ["https://mcp.example.com/mcp"]}
`, fmt.Sprintf(`spiffe:
  workload_api_socket: %s
  trust_domains: [{name: prod.example.org, workload_api: true}]`, api.Addr))
	env := testEnv(map[string]string{"SPIFFE_ENDPOINT_SOCKET": api.Addr})
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _, err := run(t, env, "token", "--broker", broker, "--ca", ca, "--audience", "https://mcp.example.com/mcp", "--source", "spiffe")
		if err == nil && strings.Count(out, ".") == 2 {
			break
		}
		if time.Now().After(deadline) { // the broker's Workload API source connects in the background
			t.Fatalf("spiffe source: %q %v", out, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTokenWatch: --watch rewrites the token file before the token
// expires (the agent's clock is advanced past 80% of the lifetime).
func TestTokenWatch(t *testing.T) {
	broker, ca, tokenFile, _ := brokerWithProvider(t)
	var mu sync.Mutex
	now := time.Now()
	e := testEnv(nil)
	e.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	out := filepath.Join(t.TempDir(), "at")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root := newRootCommand(e)
	root.SetArgs([]string{"token", "--broker", broker, "--ca", ca, "--audience", "https://mcp.example.com/mcp",
		"--source", "file:" + tokenFile, "--out", out, "--watch", "--poll", "20ms"})
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	var first []byte
	for deadline := time.Now().Add(10 * time.Second); len(first) == 0; time.Sleep(10 * time.Millisecond) {
		first, _ = os.ReadFile(out)
		if time.Now().After(deadline) {
			t.Fatal("no token file")
		}
	}
	time.Sleep(1100 * time.Millisecond) // a new second: a new iat, a different token
	mu.Lock()
	now = now.Add(13 * time.Minute) // past 80% of 15 minutes
	mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(out); len(b) > 0 && string(b) != string(first) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("--watch did not refresh the token file")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("--watch ended with %v", err)
	}
}

// TestTokenCommandAWS: the aws source signs GetCallerIdentity with the
// SDK's credential chain (environment credentials here); the server sends
// it to the (loopback) STS and grants the role's token.
func TestTokenCommandAWS(t *testing.T) {
	creds := sdkaws.Credentials{AccessKeyID: "AKIDFAKEEXAMPLE01", SecretAccessKey: "fake-secret"}
	sts := httptest.NewTLSServer(awsfake.AssumedRole(creds, "us-east-1"))
	defer sts.Close()
	stsCA := filepath.Join(t.TempDir(), "sts.pem")
	os.WriteFile(stsCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sts.Certificate().Raw}), 0o600)
	broker, ca := serveBroker(t, `id: role
match: {provider: aws, subject: "arn:aws:iam::111122223333:role/token-client-role"}
grant: {client_id: role-client, audiences: ["https://mcp.example.com/mcp"]}
`, fmt.Sprintf(`aws: {enabled: true, sts_hosts: ["%s"], sts_ca_file: %s}`, strings.TrimPrefix(sts.URL, "https://"), stsCA))
	for k, v := range map[string]string{"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY": creds.SecretAccessKey,
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"} {
		t.Setenv(k, v)
	}
	env := testEnv(map[string]string{"MCPSTS_AWS_STS_ENDPOINT": sts.URL})
	args := []string{"token", "--broker", broker, "--ca", ca, "--audience", "https://mcp.example.com/mcp", "--source", "aws"}
	out, _, err := run(t, env, args...)
	if err != nil || strings.Count(out, ".") != 2 {
		t.Fatalf("aws source: %q %v", out, err)
	}
}

// cloudBroker starts a server trusting idp as provider name with preset
// and one trust map (audience "" means the broker's issuer), and returns the broker URL and the CA to trust.
func cloudBroker(t *testing.T, idp *federationtest.Issuer, name, preset, audience, match string) (broker, ca string) {
	t.Helper()
	idpCA := filepath.Join(t.TempDir(), "idp-ca.pem")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	audiences := "" // the broker's issuer
	if audience != "" {
		audiences = fmt.Sprintf("\n    audiences: [%q]", audience)
	}
	return serveBroker(t, "id: cloud\nmatch:\n"+match+"grant: {client_id: cloud-client, audiences: [\"https://mcp.example.com/mcp\"]}\n",
		fmt.Sprintf(`providers:
  - name: %s
    issuer: %s
    discovery: true
    ca_file: %s
    preset: %s%s`, name, idp.URL, idpCA, preset, audiences))
}

// TestTokenCommandGCP: the gcp source gets an instance identity token from
// the (loopback) metadata server; the server verifies it against the
// (loopback) Google issuer with the google preset and grants by project.
func TestTokenCommandGCP(t *testing.T) {
	google := federationtest.NewIssuer(t)
	md := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" || r.URL.Path != "/computeMetadata/v1/instance/service-accounts/default/identity" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		n := time.Now().Unix()
		w.Write([]byte(google.Sign(map[string]any{
			"iss": google.URL, "aud": r.URL.Query().Get("audience"), "azp": "104857600000000000001", "sub": "104857600000000000001",
			"iat": n, "exp": n + 3600, "email": "123456789012-compute@developer.gserviceaccount.com", "email_verified": true,
			"google": map[string]any{"compute_engine": map[string]any{
				"instance_creation_timestamp": 1768384800, "instance_id": "4711000000000000001", "instance_name": "broker-client-1",
				"project_id": "example-project-123456", "project_number": 123456789012, "zone": "us-central1-a",
			}},
		}, nil)))
	}))
	defer md.Close()
	broker, ca := cloudBroker(t, google, "google", "google", "", `  provider: google
  subject: "104857600000000000001"
  conditions: ['identity.attributes.project_id == "example-project-123456"', 'identity.attributes.zone.startsWith("us-")']
`)
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(md.URL, "http://"))
	out, stderr, err := run(t, testEnv(nil), "token", "--broker", broker, "--ca", ca, "--audience", "https://mcp.example.com/mcp", "--source", "gcp", "--json")
	if err != nil || !strings.Contains(out, `"access_token"`) {
		t.Fatalf("gcp source: %q %q %v", out, stderr, err)
	}
}

// TestTokenCommandAzure: the azure source gets a managed-identity token
// for the broker's application from a (loopback) App Service
// managed-identity endpoint through azidentity; the server verifies it
// with the azure preset and grants by resource group.
func TestTokenCommandAzure(t *testing.T) {
	entra := federationtest.NewIssuer(t)
	const tid, oid = "00000000-aaaa-4bbb-8ccc-000000000001", "00000000-3333-4444-8555-000000000004"
	mi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-IDENTITY-HEADER") != "mi-header" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		n := time.Now().Unix()
		tok := entra.Sign(map[string]any{
			"iss": entra.URL, "aud": r.URL.Query().Get("resource"), "iat": n, "nbf": n, "exp": n + 86700,
			"appid": "00000000-2222-4333-8444-000000000003", "oid": oid, "sub": oid, "tid": tid, "ver": "1.0",
			"xms_mirid": "/subscriptions/00000000-1111-4222-8333-000000000002/resourcegroups/payments-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/agent-mi",
		}, nil)
		json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "expires_on": n + 86700, "resource": r.URL.Query().Get("resource"), "token_type": "Bearer"})
	}))
	defer mi.Close()
	// azidentity caches managed-identity tokens for the process, by
	// resource: a resource of this run's own keeps a token of an earlier
	// run (with -count, signed by another issuer) out of it.
	app := "api://mcpsts-" + rand.Text()
	broker, ca := cloudBroker(t, entra, "entra", "azure", app, `  provider: entra
  subject: "`+oid+`"
  conditions: ['identity.attributes.tid == "`+tid+`"', 'identity.attributes.resource_group == "payments-rg"']
`)
	t.Setenv("IDENTITY_ENDPOINT", mi.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "mi-header")
	out, stderr, err := run(t, testEnv(map[string]string{"MCPSTS_AZURE_APP": app}), "token", "--broker", broker, "--ca", ca, "--audience", "https://mcp.example.com/mcp", "--source", "azure", "--json")
	if err != nil || !strings.Contains(out, `"access_token"`) {
		t.Fatalf("azure source: %q %q %v", out, stderr, err)
	}
}

// handOver gives serve the listener ln for addr, bound by the test before
// it wrote the configuration naming that address: nothing else can take
// the port in between.
func handOver(addr string, ln net.Listener) func(string) net.Listener {
	return func(a string) net.Listener {
		if a == addr {
			return ln
		}
		return nil
	}
}
