package terraform_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	tfterraform "github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/terraform"
)

// acceptance skips t unless acceptance tests are on (.ci/run turns them on).
func acceptance(t *testing.T) {
	t.Helper()
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1 and TF_ACC_TERRAFORM_PATH (.ci/run does)")
	}
}

var factories = map[string]func() (tfprotov6.ProviderServer, error){
	"mcpsts": providerserver.NewProtocol6WithError(terraform.New("test")()),
}

// broker is a real `mcpsts serve --dev` process started from its binary:
// issuer https://127.0.0.1:PORT, its generated CA and administrator
// certificate, and a fake Kubernetes issuer the test may trust (trustIdP).
type broker struct {
	issuer, ca, adminCert, adminKey string
	idp                             *federationtest.Issuer
	http                            *http.Client // an administrator's client
}

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// mcpstsBinary builds cmd/mcpsts once per test run.
func mcpstsBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mcpsts-acc")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "mcpsts")
		out, err := exec.Command("go", "build", "-o", binary, "github.com/mcpsts/mcpsts/cmd/mcpsts").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

func startBroker(t *testing.T) *broker {
	t.Helper()
	dir := t.TempDir()
	b := &broker{idp: federationtest.NewIssuer(t)}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, mcpstsBinary(t), "serve", "--dev", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	// The banner names the issuer, the CA and the administrator's
	// certificate.
	banner := map[string]string{}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
			if ok && k == "try" {
				close(ready)
				break
			}
			if ok {
				banner[k] = strings.TrimSpace(v)
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("mcpsts serve --dev did not start")
	}
	b.issuer, b.ca = banner["issuer"], banner["trust CA"]
	if m := regexp.MustCompile(`^client certificate (\S+), key (\S+)$`).FindStringSubmatch(banner["admin"]); m != nil {
		b.adminCert, b.adminKey = m[1], m[2]
	}
	if !strings.HasPrefix(b.issuer, "https://127.0.0.1:") || b.adminCert == "" {
		t.Fatalf("banner %v", banner)
	}

	pem, _ := os.ReadFile(b.ca)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	pair, err := tls.LoadX509KeyPair(b.adminCert, b.adminKey)
	if err != nil {
		t.Fatal(err)
	}
	b.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}}}

	// The provider reads its settings from the environment, as in CI.
	t.Setenv("MCPSTS_URL", b.issuer)
	t.Setenv("MCPSTS_CA_FILE", b.ca)
	t.Setenv("MCPSTS_CLIENT_CERT_FILE", b.adminCert)
	t.Setenv("MCPSTS_CLIENT_KEY_FILE", b.adminKey)
	cli := filepath.Join(dir, "terraformrc")
	os.WriteFile(cli, nil, 0o600)
	t.Setenv("TF_CLI_CONFIG_FILE", cli)
	t.Setenv("CHECKPOINT_DISABLE", "1")
	return b
}

// trustIdP registers the test's fake Kubernetes issuer as provider "ci"
// through the admin API and waits until the server trusts it.
func (b *broker) trustIdP(t *testing.T) {
	t.Helper()
	ca := filepath.Join(t.TempDir(), "idp.pem")
	os.WriteFile(ca, b.idp.CAPEM(), 0o600)
	doc := fmt.Sprintf(`{"name":"ci","issuer":%q,"discovery":true,"ca_file":%q}`, b.idp.URL, ca)
	if status, body := b.admin(t, "PUT", "/admin/v1/providers/ci", doc, map[string]string{"If-None-Match": "*"}); status != 201 {
		t.Fatalf("provider ci: %d %v", status, body)
	}
}

// admin calls the admin API directly, as an operator would outside
// Terraform.
func (b *broker) admin(t *testing.T, method, path, body string, header map[string]string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, b.issuer+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := b.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func trustMapConfig(scopes, conditions string) string {
	return fmt.Sprintf(`
resource "mcpsts_trust_map" "agent" {
  id          = "agent"
  description = "the agents of namespace apps"
  match = {
    provider   = "ci"
    subject    = "system:serviceaccount:apps:agent"
    conditions = [%s]
  }
  grant = {
    client_id      = "agent"
    audiences      = ["https://files.example.com/mcp"]
    scopes         = [%s]
    default_scopes = ["files:read"]
    max_ttl        = "10m"
    may_act        = [{ provider = "ci", subject = "system:serviceaccount:apps:files" }]
    authorization_servers = ["https://as.example.com"]
  }
}
`, conditions, scopes)
}

// TestAccTrustMap: create, update, import with verify, drift, a broken CEL
// condition at plan time, destroy.
func TestAccTrustMap(t *testing.T) {
	acceptance(t)
	b := startBroker(t)
	const name = "mcpsts_trust_map.agent"
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		CheckDestroy: func(*tfterraform.State) error {
			if status, _ := b.admin(t, "GET", "/admin/v1/trust-maps/agent", "", nil); status != 404 {
				return fmt.Errorf("the map survived destroy: %d", status)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: trustMapConfig(`"files:read"`, `"request.scopes.size() <= 2"`),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(name, "version", "1"),
					resource.TestCheckResourceAttr(name, "priority", "0"),
					resource.TestCheckResourceAttr(name, "grant.scopes.#", "1"),
					resource.TestCheckResourceAttr(name, "grant.may_act.0.subject", "system:serviceaccount:apps:files"),
					resource.TestCheckResourceAttr(name, "grant.authorization_servers.0", "https://as.example.com"),
					func(*tfterraform.State) error {
						status, body := b.admin(t, "GET", "/admin/v1/trust-maps/agent", "", nil)
						if status != 200 || !strings.Contains(fmt.Sprint(body["map"]), "request.scopes.size() <= 2") || !strings.Contains(fmt.Sprint(body["map"]), "https://as.example.com") {
							return fmt.Errorf("the server holds %d %v", status, body)
						}
						return nil
					},
				),
			},
			{
				Config: trustMapConfig(`"files:read", "files:write"`, `"request.scopes.size() <= 2"`),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(name, "version", "2"),
					resource.TestCheckResourceAttr(name, "grant.scopes.1", "files:write"),
				),
			},
			{
				// A broken CEL condition fails at plan time, where the
				// server would, with its message, on the attribute.
				Config:      trustMapConfig(`"files:read"`, `"request.scopes.size() <= 2", "identity.attributes.namespace =="`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)match\.conditions\[1\].*Syntax error`),
			},
			{
				Config:      strings.Replace(trustMapConfig(`"files:read"`, ``), "https://files.example.com/mcp", "http://files.example.com/mcp", 1),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`grant\.audiences\[0\]: "http://files.example.com/mcp" is not an absolute https\s+URI`),
			},
			{ResourceName: name, ImportState: true, ImportStateId: "agent", ImportStateVerify: true},
			{
				// Drift: an operator changes the map outside Terraform; the
				// next plan shows it.
				PreConfig: func() {
					doc := `{"id":"agent","match":{"provider":"ci","subject":"system:serviceaccount:apps:agent"},"grant":{"client_id":"agent","audiences":["https://evil.example.com/mcp"]}}`
					if status, body := b.admin(t, "PUT", "/admin/v1/trust-maps/agent", doc, map[string]string{"If-Match": `"2"`}); status != 200 {
						t.Fatalf("out-of-band change: %d %v", status, body)
					}
				},
				Config:             trustMapConfig(`"files:read", "files:write"`, `"request.scopes.size() <= 2"`),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{
				// Applying the configuration again puts it back.
				Config: trustMapConfig(`"files:read", "files:write"`, `"request.scopes.size() <= 2"`),
				Check:  resource.TestCheckResourceAttr(name, "grant.audiences.0", "https://files.example.com/mcp"),
			},
		},
	})
}

// exampleConfig is terraform/examples/main.tf as the test harness runs it
// (the harness supplies the provider, so the terraform block goes).
func exampleConfig(t *testing.T, edit func(string) string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("examples", "main.tf"))
	if err != nil {
		t.Fatal(err)
	}
	s := regexp.MustCompile(`(?s)terraform \{.*?\n\}\n`).ReplaceAllString(string(b), "")
	if edit != nil {
		s = edit(s)
	}
	return s
}

// TestAccExample applies terraform/examples/main.tf: a Kubernetes provider,
// two trust maps with conditions, a client, a consent and the data sources;
// a workload of the cluster then gets a token through it, a plan right
// after shows no changes, an out-of-band change shows as drift, and a
// broken CEL condition fails at plan time.
func TestAccExample(t *testing.T) {
	acceptance(t)
	b := startBroker(t)
	cluster := federationtest.NewIssuer(t)
	caFile := filepath.Join(t.TempDir(), "cluster.pem")
	os.WriteFile(caFile, cluster.CAPEM(), 0o600)
	vars := config.Variables{"kubernetes_issuer": config.StringVariable(cluster.URL), "kubernetes_ca_file": config.StringVariable(caFile),
		"alice_consent_expires_at": config.StringVariable(time.Now().Add(90 * 24 * time.Hour).UTC().Format("2006-01-02T00:00:00Z"))}
	example := exampleConfig(t, nil)
	agentToken := func(*tfterraform.State) error {
		return eventually("a token through the example's trust map", func() (bool, string) {
			n := time.Now().Unix()
			subject := cluster.Sign(map[string]any{"iss": cluster.URL, "sub": "system:serviceaccount:apps:agent", "aud": []string{b.issuer}, "iat": n, "nbf": n, "exp": n + 600,
				"kubernetes.io": map[string]any{"namespace": "apps", "serviceaccount": map[string]any{"name": "agent", "uid": "9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b"},
					"pod": map[string]any{"name": "agent-6d8f9c7b5-x2k4p", "uid": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"}}}, nil)
			status, out := b.exchangeJWT(t, subject, "https://files.example.com/mcp")
			return status == 200 && out["scope"] == "files:read", outcome(status, out)
		})
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{
			{
				Config: example, ConfigVariables: vars,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("data.mcpsts_metadata.broker", "issuer", b.issuer),
					resource.TestCheckResourceAttr("data.mcpsts_metadata.broker", "token_endpoint", b.issuer+"/token"),
					resource.TestCheckResourceAttr("data.mcpsts_explain.billing_agent", "allowed", "false"),
					resource.TestCheckResourceAttr("data.mcpsts_explain.billing_agent", "denial", "no_matching_map"),
					resource.TestCheckResourceAttrSet("mcpsts_consent.alice", "id"),
					agentToken,
				),
			},
			{Config: example, ConfigVariables: vars, PlanOnly: true}, // no changes
			{ResourceName: "mcpsts_consent.alice", Config: example, ConfigVariables: vars, ImportState: true, ImportStateVerify: true},
			{
				// Changed outside Terraform: the next plan shows it.
				PreConfig: func() {
					doc := `{"id":"apps-agents","match":{"provider":"kubernetes","subject_pattern":".*"},"grant":{"client_id":"apps-agent","audiences":["https://files.example.com/mcp"],"scopes":["files:read","files:write"]}}`
					if status, body := b.admin(t, "PUT", "/admin/v1/trust-maps/apps-agents", doc, map[string]string{"If-Match": `"1"`}); status != 200 {
						t.Fatalf("out-of-band change: %d %v", status, body)
					}
				},
				Config: example, ConfigVariables: vars, PlanOnly: true, ExpectNonEmptyPlan: true,
			},
			{
				Config: exampleConfig(t, func(s string) string {
					return strings.Replace(s, `s.startsWith(\"files:\"))`, `s.startsWith(\"files:\")`, 1)
				}),
				ConfigVariables: vars, PlanOnly: true,
				ExpectError: regexp.MustCompile(`(?s)match\.conditions\[1\].*Syntax error`),
			},
			{Config: example, ConfigVariables: vars, Check: agentToken},
		},
	})
}

// exchange gets a token through the trust map Terraform made: the
// workload's Kubernetes token exchanged at the token endpoint.
func (b *broker) exchange(t *testing.T) error {
	return eventually("no token through the trust map", func() (bool, string) {
		status, out := b.tokenFor(t, b.idp, "system:serviceaccount:apps:agent", "https://files.example.com/mcp")
		return status == 200 && out["access_token"] != nil && out["scope"] == "files:read", outcome(status, out)
	})
}

// tokenFor exchanges a token of idp for sub at the token endpoint.
func (b *broker) tokenFor(t *testing.T, idp *federationtest.Issuer, sub, resource string) (int, map[string]any) {
	t.Helper()
	n := time.Now().Unix()
	return b.exchangeJWT(t, idp.Sign(map[string]any{"iss": idp.URL, "sub": sub, "aud": b.issuer, "iat": n, "exp": n + 600}, nil), resource)
}

// exchangeJWT posts a token exchange of the JWT subject for resource, with
// the posture assertions given, and returns the answer's status and body.
func (b *broker) exchangeJWT(t *testing.T, subject, resource string, posture ...string) (int, map[string]any) {
	t.Helper()
	resp, err := b.http.PostForm(b.issuer+"/token", url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {subject},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {resource}, "posture_token": posture,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// outcome describes an answer for a failure message.
func outcome(status int, out map[string]any) string {
	return fmt.Sprint(status, " ", out["error"], " ", out["error_description"])
}

// eventually waits for the server's next reloads to show want.
func eventually(what string, check func() (bool, string)) error {
	deadline := time.Now().Add(30 * time.Second) // --dev reloads the store every 5 s
	for {
		ok, got := check()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s", what, got)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func providerClientConfig(grantTypes string) func(b *broker, idp *federationtest.Issuer, caFile string) string {
	return func(b *broker, idp *federationtest.Issuer, caFile string) string {
		return fmt.Sprintf(`
resource "mcpsts_federation_provider" "gitlab" {
  id        = "gitlab"
  issuer    = %q
  discovery = true
  ca_file   = %q
  preset    = "generic"
  leeway    = "30s"
}

resource "mcpsts_trust_map" "deployer" {
  id = "deployer"
  match = {
    provider = mcpsts_federation_provider.gitlab.id
    subject  = "project_path:ops/deploy:ref_type:branch:ref:main"
  }
  grant = {
    client_id = "deployer"
    audiences = ["https://deploy.example.com/mcp"]
  }
}

resource "mcpsts_client" "deployer" {
  id            = "deployer"
  name          = "Deployment agent"
  grant_types   = [%s]
  redirect_uris = ["https://deploy.example.com/callback", "http://127.0.0.1:8765/callback"]
}
`, idp.URL, caFile, grantTypes)
	}
}

// TestAccProviderAndClient: a federation provider and a client registered
// through Terraform are in force without a restart: the provider's tokens
// get exchanged, and the client only with its grant types; import, drift
// and plan-time validation.
func TestAccProviderAndClient(t *testing.T) {
	acceptance(t)
	b := startBroker(t)
	gitlab := federationtest.NewIssuer(t)
	caFile := filepath.Join(t.TempDir(), "gitlab.pem")
	os.WriteFile(caFile, gitlab.CAPEM(), 0o600)
	const sub = "project_path:ops/deploy:ref_type:branch:ref:main"
	token := func(want int, code string) func(*tfterraform.State) error {
		return func(*tfterraform.State) error {
			return eventually("token exchange", func() (bool, string) {
				status, out := b.tokenFor(t, gitlab, sub, "https://deploy.example.com/mcp")
				return status == want && (code == "" || out["error"] == code), outcome(status, out)
			})
		}
	}
	only := providerClientConfig(`"client_credentials"`)(b, gitlab, caFile)
	both := providerClientConfig(`"client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"`)(b, gitlab, caFile)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		CheckDestroy: func(*tfterraform.State) error {
			for _, p := range []string{"/admin/v1/providers/gitlab", "/admin/v1/clients/deployer"} {
				if status, _ := b.admin(t, "GET", p, "", nil); status != 404 {
					return fmt.Errorf("%s survived destroy: %d", p, status)
				}
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				// The registered client may not use token exchange.
				Config: only,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("mcpsts_federation_provider.gitlab", "version", "1"),
					resource.TestCheckResourceAttr("mcpsts_client.deployer", "redirect_uris.1", "http://127.0.0.1:8765/callback"),
					token(400, "unauthorized_client"),
				),
			},
			{
				Config: both,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("mcpsts_client.deployer", "version", "2"),
					token(200, ""),
				),
			},
			{
				Config:      strings.Replace(both, `"https://deploy.example.com/callback"`, `"http://deploy.example.com/callback"`, 1),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`redirect_uris\[0\]: "http://deploy.example.com/callback" is plain\s+http`),
			},
			{
				Config:      strings.Replace(both, `issuer    = "`+gitlab.URL+`"`, `issuer    = "http://gitlab.example.com"`, 1),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`issuer: `),
			},
			{
				// ID-JAGs name a person: only a user provider issues them.
				Config:      strings.Replace(both, `leeway    = "30s"`, `leeway    = "30s"`+"\n  id_jag    = true", 1),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`id_jag: ID-JAGs name a user`),
			},
			{ResourceName: "mcpsts_federation_provider.gitlab", ImportState: true, ImportStateId: "gitlab", ImportStateVerify: true},
			{ResourceName: "mcpsts_client.deployer", ImportState: true, ImportStateId: "deployer", ImportStateVerify: true},
			{
				// The client changed outside Terraform: the next plan shows it.
				PreConfig: func() {
					doc := `{"client_id":"deployer","grant_types":["client_credentials"]}`
					req, _ := http.NewRequest(http.MethodPut, b.issuer+"/admin/v1/clients/deployer", strings.NewReader(doc))
					req.Header.Set("If-Match", `"2"`)
					resp, err := b.http.Do(req)
					if err != nil || resp.StatusCode != 200 {
						t.Fatalf("out-of-band client change: %v %v", resp, err)
					}
					resp.Body.Close()
				},
				Config:             both,
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{Config: both, Check: resource.TestCheckResourceAttr("mcpsts_client.deployer", "version", "4")},
			{
				// Removed outside Terraform: the provider is no longer
				// trusted, and the plan puts it back.
				PreConfig: func() {
					if status, body := b.admin(t, "DELETE", "/admin/v1/providers/gitlab", "", map[string]string{"If-Match": `"1"`}); status != 204 {
						t.Fatalf("out-of-band delete: %d %v", status, body)
					}
					if err := token(400, "invalid_request")(nil); err != nil {
						t.Fatalf("a removed provider is still trusted: %v", err)
					}
				},
				Config:             both,
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{Config: both, Check: token(200, "")},
		},
	})
}

// TestAccTokenAuth: the provider authenticates to the admin API with no
// certificate and no secret: the runner's platform token (here a
// Kubernetes service-account token in a file) exchanged at the broker for
// a token with the admin scope, through an admin trust map.
func TestAccTokenAuth(t *testing.T) {
	acceptance(t)
	b := startBroker(t)
	b.trustIdP(t)
	admin := fmt.Sprintf(`{"id":"terraform-admin","match":{"provider":"ci","subject":"system:serviceaccount:ci:terraform"},"grant":{"client_id":"terraform","audiences":[%q],"scopes":["mcpsts:admin"]}}`, b.issuer+"/admin")
	if status, body := b.admin(t, "PUT", "/admin/v1/trust-maps/terraform-admin", admin, map[string]string{"If-None-Match": "*"}); status != 201 {
		t.Fatalf("admin trust map: %d %v", status, body)
	}
	if err := eventually("provider ci trusted", func() (bool, string) {
		status, out := b.tokenFor(t, b.idp, "system:serviceaccount:ci:terraform", b.issuer+"/admin")
		return status == 200, fmt.Sprint(status, out["error_description"])
	}); err != nil {
		t.Fatal(err)
	}
	n := time.Now().Unix()
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(b.idp.Sign(map[string]any{"iss": b.idp.URL, "sub": "system:serviceaccount:ci:terraform", "aud": b.issuer, "iat": n, "exp": n + 600}, nil)), 0o600)
	t.Setenv("MCPSTS_CLIENT_CERT_FILE", "")
	t.Setenv("MCPSTS_CLIENT_KEY_FILE", "")
	t.Setenv("MCPSTS_TOKEN_SOURCE", "file:"+tokenFile)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{{
			Config: `
resource "mcpsts_client" "ci" {
  id          = "ci"
  grant_types = ["client_credentials"]
}
`,
			Check: func(*tfterraform.State) error {
				if status, _ := b.admin(t, "GET", "/admin/v1/clients/ci", "", nil); status != 200 {
					return fmt.Errorf("the client was not registered: %d", status)
				}
				return nil
			},
		}},
	})
	// Without the admin trust map, the same evidence gets no admin token.
	if status, _ := b.admin(t, "DELETE", "/admin/v1/trust-maps/terraform-admin", "", map[string]string{"If-Match": `"1"`}); status != 204 {
		t.Fatal("delete admin map")
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{{
			Config: `
data "mcpsts_explain" "x" {
  identity_provider = "ci"
  subject           = "x"
  audience          = "https://x.example.com/mcp"
}
`,
			ExpectError: regexp.MustCompile(`(?s)mcpsts admin token:.*no trust map`),
		}},
	})
}

// TestAccSPIFFEAndAWSProviders: a SPIFFE trust domain and AWS as
// mcpsts_federation_provider; a JWT-SVID of the trust domain gets a token
// through a trust map once the server reloads; import and plan-time rules.
func TestAccSPIFFEAndAWSProviders(t *testing.T) {
	acceptance(t)
	b := startBroker(t)
	prod := federationtest.NewTrustDomain("prod.example.org")
	bundle := filepath.Join(t.TempDir(), "prod.json")
	raw, _ := prod.Bundle().Marshal()
	os.WriteFile(bundle, raw, 0o600)
	cfg := fmt.Sprintf(`
resource "mcpsts_federation_provider" "prod" {
  id          = "prod.example.org"
  type        = "spiffe"
  bundle_file = %q
}

resource "mcpsts_federation_provider" "aws" {
  id        = "aws"
  type      = "aws"
  sts_hosts = ["sts.us-east-1.amazonaws.com"]
}

resource "mcpsts_trust_map" "agent" {
  id = "spiffe-agent"
  match = {
    provider = mcpsts_federation_provider.prod.id
    subject  = "spiffe://prod.example.org/agent"
  }
  grant = {
    client_id = "agent"
    audiences = ["https://files.example.com/mcp"]
  }
}
`, bundle)
	svid := func(*tfterraform.State) error {
		return eventually("a JWT-SVID through the store's trust domain", func() (bool, string) {
			status, out := b.exchangeJWT(t, prod.JWTSVID("/agent", []string{b.issuer}, time.Now().Add(5*time.Minute)), "https://files.example.com/mcp")
			return status == 200, outcome(status, out)
		})
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{
			{Config: cfg, Check: resource.ComposeAggregateTestCheckFunc(resource.TestCheckResourceAttr("mcpsts_federation_provider.aws", "type", "aws"), svid)},
			{ResourceName: "mcpsts_federation_provider.prod", ImportState: true, ImportStateId: "prod.example.org", ImportStateVerify: true},
			{ResourceName: "mcpsts_federation_provider.aws", ImportState: true, ImportStateId: "aws", ImportStateVerify: true},
			{
				Config:      strings.Replace(cfg, `bundle_file = "`, `workload_api = true`+"\n"+`  bundle_file = "`, 1),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`want exactly one bundle source`),
			},
			{Config: cfg, PlanOnly: true},
		},
	})
}

// TestAccImpact: real traffic through a real server, then mcpsts_impact
// in a plan: removing the map the traffic used shows its identity losing
// access, and a postcondition guarding a protected identity fails the plan
// (terraform/examples/impact/main.tf, run here); an unchanged map changes
// nothing.
func TestAccImpact(t *testing.T) {
	acceptance(t)
	b := startBroker(t)
	b.trustIdP(t)
	const sub = "system:serviceaccount:apps:agent"
	doc := `{"id":"agent","match":{"provider":"ci","subject":"` + sub + `"},"grant":{"client_id":"agent","audiences":["https://files.example.com/mcp"]}}`
	if status, body := b.admin(t, "PUT", "/admin/v1/trust-maps/agent", doc, map[string]string{"If-None-Match": "*"}); status != 201 {
		t.Fatalf("map: %d %v", status, body)
	}
	if err := eventually("token exchange", func() (bool, string) {
		status, out := b.tokenFor(t, b.idp, sub, "https://files.example.com/mcp")
		return status == 200, outcome(status, out)
	}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if status, out := b.tokenFor(t, b.idp, sub, "https://files.example.com/mcp"); status != 200 {
			t.Fatalf("traffic: %d %v", status, out)
		}
	}
	time.Sleep(200 * time.Millisecond) // the audit log is written every 50 ms
	example, err := os.ReadFile(filepath.Join("examples", "impact", "main.tf"))
	if err != nil {
		t.Fatal(err)
	}
	base := regexp.MustCompile(`(?s)terraform \{.*?\n\}\n`).ReplaceAllString(string(example), "")
	base = strings.Replace(base, `provider "mcpsts" {}`, "", 1)
	// The data source alone (the resource would apply the proposal).
	onlyData := regexp.MustCompile(`(?s)resource "mcpsts_trust_map" "agent" \{.*?\n\}\n`).ReplaceAllString(base, "")
	removing := strings.Replace(onlyData, `maps  = { (local.agent_map.id) = jsonencode(local.agent_map) }`, `removed = ["agent"]`, 1)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{
			{
				// The map as it is: nothing changes, the plan passes.
				Config: onlyData,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("data.mcpsts_impact.proposed", "changes", "false"),
					resource.TestCheckResourceAttr("data.mcpsts_impact.proposed", "lose_count", "0"),
					func(s *tfterraform.State) error {
						if n := s.RootModule().Resources["data.mcpsts_impact.proposed"].Primary.Attributes["unchanged"]; n == "0" {
							return fmt.Errorf("no decision replayed")
						}
						return nil
					},
				),
			},
			{
				// Removing the map cuts off a protected identity: the plan
				// fails with the postcondition's message.
				Config:      removing,
				ExpectError: regexp.MustCompile(`the change cuts off: ci/system:serviceaccount:apps:agent`),
			},
		},
	})
}

// TestAccPostureSource: mcpsts_posture_source puts an EDR service's signed
// assertions in force (from the server's next reload), a trust map reads
// them, mcpsts_explain shows what the map read of them; import, and the
// plan-time rules (no allow on error).
func TestAccPostureSource(t *testing.T) {
	acceptance(t)
	b := startBroker(t)
	b.trustIdP(t)
	edr := federationtest.NewIssuer(t)
	edrCA := filepath.Join(t.TempDir(), "edr.pem")
	os.WriteFile(edrCA, edr.CAPEM(), 0o600)
	const sub = "system:serviceaccount:apps:agent"
	cfg := fmt.Sprintf(`
resource "mcpsts_posture_source" "edr" {
  id            = "edr"
  kind          = "assertion"
  issuer        = %q
  discovery     = true
  ca_file       = %q
  max_age        = "30m"
  bind_identity  = "subject"
  bind_providers = ["ci"]
}

resource "mcpsts_trust_map" "compliant" {
  id = "compliant-agent"
  match = {
    provider   = "ci"
    subject    = %q
    conditions = ["context.${mcpsts_posture_source.edr.id}.?compliant.orValue(false)", "context.edr.score >= 70"]
  }
  grant = {
    client_id = "agent"
    audiences = ["https://files.example.com/mcp"]
  }
}

data "mcpsts_explain" "compliant" {
  identity_provider = "ci"
  subject           = mcpsts_trust_map.compliant.match.subject
  audience          = "https://files.example.com/mcp"
  context_json      = jsonencode({ edr = { compliant = true, score = 82 } })
}
`, edr.URL, edrCA, sub)
	report := func(compliant bool) string {
		n := time.Now().Unix()
		return edr.Sign(map[string]any{"iss": edr.URL, "sub": sub, "iat": n, "exp": n + 600, "compliant": compliant, "score": 90}, nil)
	}
	granted := func(*tfterraform.State) error {
		return eventually("a token with a compliant report", func() (bool, string) {
			n := time.Now().Unix()
			subject := b.idp.Sign(map[string]any{"iss": b.idp.URL, "sub": sub, "aud": b.issuer, "iat": n, "exp": n + 600}, nil)
			status, out := b.exchangeJWT(t, subject, "https://files.example.com/mcp", report(true))
			if status != 200 {
				return false, outcome(status, out)
			}
			status, out = b.exchangeJWT(t, subject, "https://files.example.com/mcp", report(false))
			return status == 400, "not compliant: " + outcome(status, out)
		})
	}
	explained := func(s *tfterraform.State) error {
		a := s.RootModule().Resources["data.mcpsts_explain.compliant"].Primary.Attributes
		if a["allowed"] != "true" || !strings.Contains(a["trace"], `"source":"edr","status":"given","read":["compliant","score"]`) {
			return fmt.Errorf("explain: allowed %s, trace %s", a["allowed"], a["trace"])
		}
		return nil
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{
			{Config: cfg, Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr("mcpsts_posture_source.edr", "version", "1"), granted, explained)},
			{ResourceName: "mcpsts_posture_source.edr", ImportState: true, ImportStateId: "edr", ImportStateVerify: true},
			{
				Config:      strings.Replace(cfg, `bind_identity  = "subject"`, `bind_identity  = "subject"`+"\n"+`  on_error = "allow"`, 1),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`"allow" is not offered`),
			},
			{
				Config:      strings.Replace(cfg, "  bind_providers = [\"ci\"]\n", "", 1),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`required: the providers whose identities`),
			},
			{Config: cfg, PlanOnly: true},
		},
	})
}
