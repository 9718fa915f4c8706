package azure_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

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
	other, err := azure.Token(context.Background(), cred, "https://vault.azure.net")
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
