package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"cloud.google.com/go/compute/metadata"
	iamcredentials "cloud.google.com/go/iam/credentials/apiv1"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	awsattest "github.com/mcpsts/mcpsts/attest/aws"
	"github.com/mcpsts/mcpsts/attest/azure"
	"github.com/mcpsts/mcpsts/attest/gcp"
)

// Token types of the evidence.
const (
	typeJWT = "urn:ietf:params:oauth:token-type:jwt"
)

// FileSource reads a JWT from a file on every use (a Kubernetes projected
// service-account token, which the kubelet rotates in place, or any JWT).
type FileSource struct {
	Path  string
	Label string // name in diagnostics; default "file:<path>"
}

// Name implements Source.
func (f FileSource) Name() string {
	if f.Label != "" {
		return f.Label
	}
	return "file:" + f.Path
}

// Evidence implements Source.
func (f FileSource) Evidence(context.Context, string) (Evidence, error) {
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return Evidence{}, err
	}
	tok := strings.TrimSpace(string(b))
	if strings.Count(tok, ".") != 2 {
		return Evidence{}, fmt.Errorf("%s does not hold a JWT", f.Path)
	}
	return Evidence{Token: tok, TokenType: typeJWT}, nil
}

// DefaultK8sTokenPath is where the k8s source reads the projected
// service-account token (a volume with audience = the broker's issuer);
// MCPSTS_K8S_TOKEN_FILE overrides it.
const DefaultK8sTokenPath = "/var/run/secrets/mcpsts/token"

// GitHubSource asks the GitHub Actions runtime for an OIDC token addressed
// to the broker (ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN; the job needs
// `permissions: id-token: write`).
type GitHubSource struct {
	Getenv func(string) string
	HTTP   *http.Client
}

// Name implements Source.
func (GitHubSource) Name() string { return "github" }

// Evidence implements Source.
func (g GitHubSource) Evidence(ctx context.Context, audience string) (Evidence, error) {
	reqURL, bearer := g.Getenv("ACTIONS_ID_TOKEN_REQUEST_URL"), g.Getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
	if reqURL == "" || bearer == "" {
		return Evidence{}, errors.New("ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set (permissions: id-token: write)")
	}
	u, err := url.Parse(reqURL)
	if err != nil {
		return Evidence{}, fmt.Errorf("ACTIONS_ID_TOKEN_REQUEST_URL: %v", err)
	}
	q := u.Query()
	q.Set("audience", audience)
	u.RawQuery = q.Encode()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	c := g.HTTP
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return Evidence{}, err
	}
	defer resp.Body.Close()
	var body struct {
		Value string `json:"value"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body) != nil || body.Value == "" {
		return Evidence{}, fmt.Errorf("the Actions token service answered %d without a token", resp.StatusCode)
	}
	return Evidence{Token: body.Value, TokenType: typeJWT}, nil
}

// SPIFFESource fetches a JWT-SVID for the broker from the SPIFFE Workload
// API (a SPIRE agent).
type SPIFFESource struct {
	Addr string // unix:///…; empty: SPIFFE_ENDPOINT_SOCKET
}

// Name implements Source.
func (SPIFFESource) Name() string { return "spiffe" }

// Evidence implements Source.
func (s SPIFFESource) Evidence(ctx context.Context, audience string) (Evidence, error) {
	var opts []workloadapi.ClientOption
	if s.Addr != "" {
		opts = append(opts, workloadapi.WithAddr(s.Addr))
	}
	svid, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: audience}, opts...)
	if err != nil {
		return Evidence{}, fmt.Errorf("Workload API: %w", err)
	}
	return Evidence{Token: svid.Marshal(), TokenType: typeJWT}, nil
}

// SPIFFEX509Source presents the workload's X.509-SVID from the Workload
// API on the TLS connection to the broker (mTLS) and names it as the
// subject of the exchange.
type SPIFFEX509Source struct {
	Addr string // unix:///…; empty: SPIFFE_ENDPOINT_SOCKET
}

// Name implements Source.
func (SPIFFEX509Source) Name() string { return "spiffe-mtls" }

// Evidence implements Source: the subject is the connection's certificate.
func (SPIFFEX509Source) Evidence(context.Context, string) (Evidence, error) {
	return Evidence{Token: "tls", TokenType: tokenTypeMTLS}, nil
}

// ClientCertificate implements CertificateSource.
func (s SPIFFEX509Source) ClientCertificate(ctx context.Context) (*tls.Certificate, error) {
	var opts []workloadapi.ClientOption
	if s.Addr != "" {
		opts = append(opts, workloadapi.WithAddr(s.Addr))
	}
	svid, err := workloadapi.FetchX509SVID(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("Workload API: %w", err)
	}
	cert := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert, nil
}

// AWSSource signs an sts:GetCallerIdentity request naming the broker with
// the AWS SDK's default credential chain (environment, profile, web
// identity, ECS, IMDS).
type AWSSource struct {
	// Endpoint is the STS endpoint (default https://sts.REGION.amazonaws.com).
	Endpoint string
	Now      func() time.Time
}

// Name implements Source.
func (AWSSource) Name() string { return "aws" }

// Evidence implements Source.
func (a AWSSource) Evidence(ctx context.Context, audience string) (Evidence, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return Evidence{}, fmt.Errorf("aws: %w", err)
	}
	if cfg.Region == "" {
		return Evidence{}, errors.New("aws: no region (set AWS_REGION)")
	}
	endpoint := a.Endpoint
	if endpoint == "" {
		endpoint = "https://sts." + cfg.Region + ".amazonaws.com"
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	tok, err := awsattest.BuildEvidence(ctx, cfg.Credentials, cfg.Region, endpoint, audience, now())
	if err != nil {
		return Evidence{}, err
	}
	return Evidence{Token: tok, TokenType: awsattest.TokenType}, nil
}

// GCPSource gets a Google ID token addressed to the broker: from the
// metadata server (GCE_METADATA_HOST overrides its address), or, when
// Impersonate names a service account, from the IAM Credentials API with
// the application default credentials.
type GCPSource struct {
	Impersonate string
	HTTP        *http.Client // metadata server client; nil means a default one
}

// Name implements Source.
func (GCPSource) Name() string { return "gcp" }

// Evidence implements Source.
func (g GCPSource) Evidence(ctx context.Context, audience string) (Evidence, error) {
	var tok string
	var err error
	if g.Impersonate == "" {
		tok, err = gcp.MetadataToken(ctx, metadata.NewWithOptions(&metadata.Options{Client: g.HTTP}), audience)
	} else {
		var c *iamcredentials.IamCredentialsClient
		if c, err = iamcredentials.NewIamCredentialsRESTClient(ctx); err != nil {
			return Evidence{}, fmt.Errorf("gcp: %w", err)
		}
		defer c.Close()
		tok, err = gcp.ImpersonatedToken(ctx, c, g.Impersonate, audience)
	}
	if err != nil {
		return Evidence{}, err
	}
	return Evidence{Token: tok, TokenType: typeJWT}, nil
}

// AzureSource gets a Microsoft Entra ID access token for the broker's
// application with azidentity: a workload identity when
// AZURE_FEDERATED_TOKEN_FILE is set (AKS), else the managed identity
// (ClientID selects a user-assigned one).
type AzureSource struct {
	// App is the broker's application ID URI or client ID; empty means the
	// broker's audience.
	App      string
	ClientID string
	Getenv   func(string) string
}

// Name implements Source.
func (AzureSource) Name() string { return "azure" }

// Evidence implements Source.
func (a AzureSource) Evidence(ctx context.Context, audience string) (Evidence, error) {
	var cred azcore.TokenCredential
	var err error
	if a.Getenv != nil && a.Getenv("AZURE_FEDERATED_TOKEN_FILE") != "" {
		cred, err = azidentity.NewWorkloadIdentityCredential(nil)
	} else {
		o := &azidentity.ManagedIdentityCredentialOptions{}
		if a.ClientID != "" {
			o.ID = azidentity.ClientID(a.ClientID)
		}
		cred, err = azidentity.NewManagedIdentityCredential(o)
	}
	if err != nil {
		return Evidence{}, fmt.Errorf("azure: %w", err)
	}
	app := a.App
	if app == "" {
		app = audience
	}
	tok, err := azure.Token(ctx, cred, app)
	if err != nil {
		return Evidence{}, err
	}
	return Evidence{Token: tok, TokenType: typeJWT}, nil
}

// SourceByName builds a source: k8s, github, spiffe, file:PATH, or auto
// (the first whose environment is present: a k8s token file, the GitHub
// Actions variables, a SPIFFE socket). It says which one auto chose.
func SourceByName(name string, getenv func(string) string) (Source, error) {
	k8sPath := getenv("MCPSTS_K8S_TOKEN_FILE")
	if k8sPath == "" {
		k8sPath = DefaultK8sTokenPath
	}
	switch {
	case name == "k8s":
		return FileSource{Path: k8sPath, Label: "k8s"}, nil
	case name == "github":
		return GitHubSource{Getenv: getenv}, nil
	case name == "spiffe":
		return SPIFFESource{Addr: getenv("SPIFFE_ENDPOINT_SOCKET")}, nil
	case name == "aws":
		return AWSSource{Endpoint: getenv("MCPSTS_AWS_STS_ENDPOINT")}, nil
	case name == "gcp":
		return GCPSource{Impersonate: getenv("MCPSTS_GCP_IMPERSONATE")}, nil
	case name == "azure":
		return AzureSource{App: getenv("MCPSTS_AZURE_APP"), ClientID: getenv("AZURE_CLIENT_ID"), Getenv: getenv}, nil
	case name == "spiffe-mtls":
		return SPIFFEX509Source{Addr: getenv("SPIFFE_ENDPOINT_SOCKET")}, nil
	case strings.HasPrefix(name, "file:") && len(name) > 5:
		return FileSource{Path: name[5:]}, nil
	case name == "auto" || name == "":
		if _, err := os.Stat(k8sPath); err == nil {
			return FileSource{Path: k8sPath, Label: "k8s"}, nil
		}
		if getenv("ACTIONS_ID_TOKEN_REQUEST_URL") != "" {
			return GitHubSource{Getenv: getenv}, nil
		}
		if getenv("SPIFFE_ENDPOINT_SOCKET") != "" {
			return SPIFFESource{Addr: getenv("SPIFFE_ENDPOINT_SOCKET")}, nil
		}
		if getenv("AWS_ACCESS_KEY_ID") != "" || getenv("AWS_WEB_IDENTITY_TOKEN_FILE") != "" || getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI") != "" || getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != "" {
			return AWSSource{Endpoint: getenv("MCPSTS_AWS_STS_ENDPOINT")}, nil
		}
		if getenv("GCE_METADATA_HOST") != "" || getenv("MCPSTS_GCP_IMPERSONATE") != "" {
			return GCPSource{Impersonate: getenv("MCPSTS_GCP_IMPERSONATE")}, nil
		}
		if getenv("IDENTITY_ENDPOINT") != "" || getenv("AZURE_FEDERATED_TOKEN_FILE") != "" {
			return AzureSource{App: getenv("MCPSTS_AZURE_APP"), ClientID: getenv("AZURE_CLIENT_ID"), Getenv: getenv}, nil
		}
		return nil, errors.New("auto: no source found (no k8s token file, no GitHub Actions token variables, no SPIFFE_ENDPOINT_SOCKET, no AWS credentials, no GCE_METADATA_HOST or MCPSTS_GCP_IMPERSONATE, no IDENTITY_ENDPOINT or AZURE_FEDERATED_TOKEN_FILE in the environment)")
	}
	return nil, fmt.Errorf("unknown source %q (want auto, k8s, github, spiffe, spiffe-mtls, aws, gcp, azure or file:PATH)", name)
}

// Assertion returns the workload credential of src addressed to audience
// (the broker's issuer) as a client_assertion (RFC 7523 §2.2), read afresh
// on every call: what an edge authenticates its introspection requests
// with. A source whose evidence is not a JWT (an AWS signed request, a TLS
// client certificate) cannot be an assertion.
func Assertion(src Source, audience string) func(ctx context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		ev, err := src.Evidence(ctx, audience)
		if err != nil {
			return "", err
		}
		if ev.TokenType != typeJWT || ev.Token == "" {
			return "", fmt.Errorf("client: source %s gives no JWT to authenticate with", src.Name())
		}
		return ev.Token, nil
	}
}
