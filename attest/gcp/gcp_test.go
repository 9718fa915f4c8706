package gcp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/compute/metadata"
	credentials "cloud.google.com/go/iam/credentials/apiv1"
	"google.golang.org/api/option"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/gcp"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/federation/federationtest"
)

const brokerAud = "https://mcpsts.example.com"

// google stands in for accounts.google.com: a loopback issuer with
// discovery and a JWKS, signing RS256 like Google.
type google struct {
	is *federationtest.Issuer
	v  *oidc.Verifier
}

func newGoogle(t *testing.T) *google {
	t.Helper()
	is := federationtest.NewIssuer(t)
	is.AddKey("RS256")
	is.DropOldKeys()
	p, err := federation.NewProvider(federation.ProviderConfig{
		Name: "google", Issuer: is.URL, Discovery: true, Fetcher: is.Fetcher(), Algorithms: []string{"RS256"},
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err := oidc.New(nil, oidc.ProviderConfig{Keys: p, Audiences: []string{brokerAud}, Preset: gcp.Preset})
	if err != nil {
		t.Fatal(err)
	}
	return &google{is: is, v: v}
}

// token signs what Google signs for a service account: the GCE claim shape
// of ../shared/fixtures/claims/gce-instance-identity.json when full.
func (g *google) token(aud, email string, full bool) string {
	n := time.Now().Unix()
	c := map[string]any{
		"iss": g.is.URL, "aud": aud, "azp": "104857600000000000001", "sub": "104857600000000000001",
		"iat": n, "exp": n + 3600, "email": email, "email_verified": true,
	}
	if full {
		c["google"] = map[string]any{"compute_engine": map[string]any{
			"instance_creation_timestamp": 1768384800, "instance_id": "4711000000000000001",
			"instance_name": "broker-client-1", "project_id": "example-project-123456",
			"project_number": 123456789012, "zone": "us-central1-a",
		}}
	}
	return g.is.Sign(c, map[string]any{"typ": "JWT"})
}

func (g *google) attest(t *testing.T, tok string) attest.Identity {
	t.Helper()
	id, err := g.v.Attest(context.Background(), attest.Evidence{Type: "urn:ietf:params:oauth:token-type:jwt", Token: []byte(tok)})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestMetadataServer: Google's metadata client, pointed at a loopback
// metadata server by GCE_METADATA_HOST, fetches a full identity token
// addressed to the broker, and the verifier turns it into an identity.
func TestMetadataServer(t *testing.T) {
	g := newGoogle(t)
	const email = "123456789012-compute@developer.gserviceaccount.com"
	md := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "missing Metadata-Flavor", http.StatusForbidden)
			return
		}
		if r.URL.Path != "/computeMetadata/v1/instance/service-accounts/default/identity" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		if q.Get("audience") == "" {
			http.Error(w, "non-empty audience parameter required", http.StatusBadRequest)
			return
		}
		w.Header().Set("Metadata-Flavor", "Google")
		w.Write([]byte(g.token(q.Get("audience"), email, q.Get("format") == "full")))
	}))
	t.Cleanup(md.Close)
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(md.URL, "http://"))

	c := metadata.NewWithOptions(&metadata.Options{Client: md.Client()})
	tok, err := gcp.MetadataToken(context.Background(), c, brokerAud)
	if err != nil {
		t.Fatal(err)
	}
	id := g.attest(t, tok)
	want := map[string]any{
		"email": email, "email_verified": true, "project_id": "example-project-123456", "project_number": "123456789012",
		"zone": "us-central1-a", "instance_id": "4711000000000000001", "instance_name": "broker-client-1",
	}
	for k, v := range want {
		if id.Attributes[k] != v {
			t.Errorf("attribute %s = %#v, want %#v", k, id.Attributes[k], v)
		}
	}
	if id.Subject != "104857600000000000001" || id.Provider != "google" {
		t.Errorf("identity = %+v", id)
	}

	if _, err := gcp.MetadataToken(context.Background(), c, ""); err == nil {
		t.Error("empty audience accepted")
	}
	// A token the metadata server mints for another audience is refused.
	other, err := gcp.MetadataToken(context.Background(), c, "https://other-broker.example")
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.v.Attest(context.Background(), attest.Evidence{Type: "urn:ietf:params:oauth:token-type:jwt", Token: []byte(other)})
	if attest.ReasonOf(err) != "wrong_audience" {
		t.Fatalf("token for another broker = %v", err)
	}
}

// TestImpersonated: the IAM Credentials REST client, pointed at a loopback
// iamcredentials endpoint, gets an ID token for another service account.
func TestImpersonated(t *testing.T) {
	g := newGoogle(t)
	const sa = "token-client@example-project-123456.iam.gserviceaccount.com"
	var got struct {
		Audience     string `json:"audience"`
		IncludeEmail bool   `json:"includeEmail"`
	}
	iam := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, _ := url.PathUnescape(r.URL.Path)
		if r.Method != http.MethodPost || path != "/v1/projects/-/serviceAccounts/"+sa+":generateIdToken" {
			http.Error(w, `{"error":{"code":404,"message":"not found"}}`, http.StatusNotFound)
			return
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			http.Error(w, `{"error":{"code":400}}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"token": g.token(got.Audience, sa, false)})
	}))
	t.Cleanup(iam.Close)

	ctx := context.Background()
	c, err := credentials.NewIamCredentialsRESTClient(ctx, option.WithEndpoint(iam.URL), option.WithHTTPClient(iam.Client()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tok, err := gcp.ImpersonatedToken(ctx, c, sa, brokerAud)
	if err != nil {
		t.Fatal(err)
	}
	if got.Audience != brokerAud || !got.IncludeEmail {
		t.Fatalf("request = %+v", got)
	}
	id := g.attest(t, tok)
	if id.Attributes["email"] != sa || id.Attributes["project_id"] != nil {
		t.Fatalf("attributes = %v", id.Attributes)
	}
	if _, err := gcp.ImpersonatedToken(ctx, c, "nobody@example.iam.gserviceaccount.com", brokerAud); err == nil {
		t.Fatal("a refused generateIdToken gave a token")
	}
}
