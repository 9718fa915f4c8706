// Package azure is Azure attestation. The server side is trust settings:
// Microsoft Entra ID access tokens of a managed identity or workload
// identity are verified by attest/oidc, through the federation machinery,
// with the azure claims preset, one provider per trusted tenant and token
// version. The agent side asks azidentity for a token addressed to the
// broker's application.
package azure

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Preset is the claims preset of Entra ID providers. Trust a tenant as
//
//	providers:
//	  - name: entra
//	    issuer: https://login.microsoftonline.com/TENANT_ID/v2.0   # v2 tokens
//	    discovery: true
//	    preset: azure
//	    audiences: [APP_CLIENT_ID]
//	  - name: entra-v1
//	    issuer: https://sts.windows.net/TENANT_ID/                 # v1 tokens
//	    jwks_uri: https://login.microsoftonline.com/TENANT_ID/discovery/keys
//	    preset: azure
//	    audiences: [api://mcpsts]
const Preset = "azure"

// Token asks cred (a ManagedIdentityCredential or WorkloadIdentityCredential)
// for an access token addressed to the broker's application, named by its
// application ID URI or client ID: the scope is app + "/.default".
func Token(ctx context.Context, cred azcore.TokenCredential, app string) (string, error) {
	if app == "" {
		return "", errors.New("azure: empty application")
	}
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{strings.TrimSuffix(app, "/") + "/.default"}})
	if err != nil {
		return "", fmt.Errorf("azure: %w", err)
	}
	return tok.Token, nil
}
