// Package gcp is Google Cloud attestation. The server side is trust
// settings: Google ID tokens (service-account ID tokens and Compute Engine
// instance identity tokens) are verified by attest/oidc, through the
// federation machinery, with the google claims preset. The agent side gets
// such a token addressed to the broker: from the metadata server on a
// Compute Engine, GKE or Cloud Run workload, or from the IAM Credentials
// API for an impersonated service account.
package gcp

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"cloud.google.com/go/compute/metadata"
	credentials "cloud.google.com/go/iam/credentials/apiv1"
	"cloud.google.com/go/iam/credentials/apiv1/credentialspb"
)

// Google's issuer of ID tokens, and the preset name its provider uses.
// Trust it in the configuration as
//
//	providers:
//	  - name: google
//	    issuer: https://accounts.google.com
//	    preset: google
//	    audiences: [https://mcpsts.example.com]
const (
	Issuer = "https://accounts.google.com"
	Preset = "google"
)

// MetadataToken asks the metadata server for an identity token of the
// attached service account addressed to audience, in the full format that
// carries the google.compute_engine claim. The metadata client honours
// GCE_METADATA_HOST as Google's libraries do.
func MetadataToken(ctx context.Context, c *metadata.Client, audience string) (string, error) {
	if audience == "" {
		return "", errors.New("gcp: empty audience")
	}
	q := url.Values{"audience": {audience}, "format": {"full"}}
	tok, err := c.GetWithContext(ctx, "instance/service-accounts/default/identity?"+q.Encode())
	if err != nil {
		return "", fmt.Errorf("gcp: metadata identity token: %w", err)
	}
	return strings.TrimSpace(tok), nil
}

// ImpersonatedToken asks the IAM Credentials API for an ID token of
// serviceAccount (an email or unique ID) addressed to audience, with its
// email included. The caller needs roles/iam.serviceAccountTokenCreator on
// it.
func ImpersonatedToken(ctx context.Context, c *credentials.IamCredentialsClient, serviceAccount, audience string) (string, error) {
	if serviceAccount == "" || audience == "" {
		return "", errors.New("gcp: service account and audience are required")
	}
	resp, err := c.GenerateIdToken(ctx, &credentialspb.GenerateIdTokenRequest{
		Name:         "projects/-/serviceAccounts/" + serviceAccount,
		Audience:     audience,
		IncludeEmail: true,
	})
	if err != nil {
		return "", fmt.Errorf("gcp: generateIdToken for %s: %w", serviceAccount, err)
	}
	return resp.GetToken(), nil
}
