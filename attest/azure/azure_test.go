package azure_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/azure"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/federation/federationtest"
)

const (
	app      = "api://mcpsts"
	tenant   = "00000000-aaaa-4bbb-8ccc-000000000001"
	clientID = "00000000-2222-4333-8444-000000000003"
	header   = "fake-identity-header-value"
)

// TestManagedIdentity: azidentity's ManagedIdentityCredential, on the App
// Service managed-identity protocol (IDENTITY_ENDPOINT, IDENTITY_HEADER)
// pointed at a loopback endpoint, gets a v1 token for the broker's
// application; the verifier turns it into an identity with the azure
// preset.
func TestManagedIdentity(t *testing.T) {
	entra := federationtest.NewIssuer(t)
	entra.AddKey("RS256")
	entra.DropOldKeys()
	var calls atomic.Int32
	mi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		q := r.URL.Query()
		if r.Header.Get("X-IDENTITY-HEADER") != header || q.Get("api-version") == "" || q.Get("client_id") != clientID {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request"})
			return
		}
		n := time.Now().Unix()
		tok := entra.Sign(map[string]any{
			"iss": entra.URL, "aud": q.Get("resource"), "iat": n, "nbf": n, "exp": n + 86700,
			"appid": clientID, "appidacr": "2", "idtyp": "app", "oid": "00000000-3333-4444-8555-000000000004",
			"sub": "00000000-3333-4444-8555-000000000004", "tid": tenant, "ver": "1.0",
			"xms_mirid": "/subscriptions/00000000-1111-4222-8333-000000000002/resourcegroups/example-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/token-client-mi",
		}, map[string]any{"typ": "JWT"})
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "expires_on": n + 86700, "resource": q.Get("resource"), "token_type": "Bearer", "client_id": clientID})
	}))
	t.Cleanup(mi.Close)
	// azidentity caches managed-identity tokens for the process, by
	// resource: a resource of this run's own keeps a token of an earlier
	// run (with -count, signed by another issuer) out of it.
	app := app + "-" + rand.Text()
	t.Setenv("IDENTITY_ENDPOINT", mi.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", header)

	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(clientID)})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := azure.Token(context.Background(), cred, app)
	if err != nil {
		t.Fatal(err)
	}

	p, err := federation.NewProvider(federation.ProviderConfig{Name: "entra", Issuer: entra.URL, Discovery: true, Fetcher: entra.Fetcher(), Algorithms: []string{"RS256"}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := oidc.New(nil, oidc.ProviderConfig{Keys: p, Audiences: []string{app}, Preset: azure.Preset})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Attest(context.Background(), attest.Evidence{Type: "urn:ietf:params:oauth:token-type:jwt", Token: []byte(tok)})
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"tid": tenant, "appid": clientID, "resource_group": "example-rg", "resource_name": "token-client-mi"} {
		if id.Attributes[k] != want {
			t.Errorf("attribute %s = %#v, want %#v", k, id.Attributes[k], want)
		}
	}

	// A token for another application is refused by the broker.
	other, err := azure.Token(context.Background(), cred, "https://vault.azure.net/"+rand.Text())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Attest(context.Background(), attest.Evidence{Type: "urn:ietf:params:oauth:token-type:jwt", Token: []byte(other)}); attest.ReasonOf(err) != "wrong_audience" {
		t.Fatalf("token for another application = %v", err)
	}
	if _, err := azure.Token(context.Background(), cred, ""); err == nil {
		t.Fatal("empty application accepted")
	}
	// A managed-identity endpoint that refuses gives an error, not a token
	// (another application: MSAL caches managed-identity tokens per process).
	t.Setenv("IDENTITY_HEADER", "wrong")
	cred2, _ := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(clientID)})
	if _, err := azure.Token(context.Background(), cred2, "api://not-yet-cached"); err == nil {
		t.Fatal("a refused managed-identity request gave a token")
	}
}

// TestWorkloadIdentity: azidentity's WorkloadIdentityCredential (AKS
// workload identity) exchanges a projected service-account token at a
// loopback Entra authority for an access token for the broker's
// application, which the verifier accepts.
func TestWorkloadIdentity(t *testing.T) {
	entra := federationtest.NewIssuer(t)
	var assertion atomic.Value
	var authority *httptest.Server
	authority = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		base := authority.URL + "/" + tenant
		switch r.URL.Path {
		case "/" + tenant + "/v2.0/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]any{
				"issuer": base + "/v2.0", "token_endpoint": base + "/oauth2/v2.0/token",
				"authorization_endpoint": base + "/oauth2/v2.0/authorize",
			})
		case "/" + tenant + "/oauth2/v2.0/token":
			r.ParseForm()
			if r.PostForm.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || r.PostForm.Get("client_id") != clientID {
				w.WriteHeader(http.StatusBadRequest)
				json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client"})
				return
			}
			assertion.Store(r.PostForm.Get("client_assertion"))
			n := time.Now().Unix()
			tok := entra.Sign(map[string]any{
				"iss": entra.URL, "aud": "00000000-4444-4555-8666-000000000005", "iat": n, "nbf": n, "exp": n + 3600,
				"azp": clientID, "azpacr": "2", "oid": "00000000-3333-4444-8555-000000000004",
				"sub": "00000000-3333-4444-8555-000000000004", "tid": tenant, "ver": "2.0",
			}, nil)
			json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(authority.Close)
	saToken := filepath.Join(t.TempDir(), "azure-identity-token")
	os.WriteFile(saToken, []byte("projected.service-account.token"), 0o600)

	cred, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
		ClientOptions:            azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: authority.URL + "/"}, Transport: authority.Client()},
		ClientID:                 clientID,
		TenantID:                 tenant,
		TokenFilePath:            saToken,
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := azure.Token(context.Background(), cred, "00000000-4444-4555-8666-000000000005")
	if err != nil {
		t.Fatal(err)
	}
	if assertion.Load() != "projected.service-account.token" {
		t.Fatalf("client assertion = %v", assertion.Load())
	}
	p, err := federation.NewProvider(federation.ProviderConfig{Name: "entra", Issuer: entra.URL, Discovery: true, Fetcher: entra.Fetcher(), Algorithms: []string{"RS256", "ES256"}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := oidc.New(nil, oidc.ProviderConfig{Keys: p, Audiences: []string{"00000000-4444-4555-8666-000000000005"}, Preset: azure.Preset})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Attest(context.Background(), attest.Evidence{Type: "urn:ietf:params:oauth:token-type:jwt", Token: []byte(tok)})
	if err != nil {
		t.Fatal(err)
	}
	if id.Attributes["appid"] != clientID || id.Attributes["tid"] != tenant {
		t.Fatalf("attributes = %v", id.Attributes)
	}
}
