// Package terraform is the mcpsts Terraform provider: trust maps and
// consents as code, and data sources for the broker's metadata and for
// explaining a decision. It talks to the admin API, authenticated without
// a static secret: with a client certificate, or with a token for the
// admin audience that mcpsts itself issues for the runner's platform
// evidence (a CI job's OIDC token, a Kubernetes service-account token).
package terraform

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/mcpsts/mcpsts/exchange/client"
)

// AdminScope is the scope of tokens for the admin API.
const AdminScope = "mcpsts:admin"

// New returns the provider of the given version.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &mcpstsProvider{version: version} }
}

type mcpstsProvider struct{ version string }

var _ provider.Provider = (*mcpstsProvider)(nil)

type providerModel struct {
	URL            types.String `tfsdk:"url"`
	CAFile         types.String `tfsdk:"ca_file"`
	ClientCertFile types.String `tfsdk:"client_cert_file"`
	ClientKeyFile  types.String `tfsdk:"client_key_file"`
	TokenSource    types.String `tfsdk:"token_source"`
	AdminAudience  types.String `tfsdk:"admin_audience"`
}

func (p *mcpstsProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "mcpsts"
	resp.Version = p.version
}

func (p *mcpstsProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Manage mcpsts trust maps and consents through its admin API.",
		Attributes: map[string]schema.Attribute{
			"url": schema.StringAttribute{Optional: true,
				Description: "The broker's issuer URL (https). Environment: MCPSTS_URL."},
			"ca_file": schema.StringAttribute{Optional: true,
				Description: "PEM CA to trust for the broker, else the system roots. Environment: MCPSTS_CA_FILE."},
			"client_cert_file": schema.StringAttribute{Optional: true,
				Description: "An administrator's client certificate (PEM) for the admin API. Environment: MCPSTS_CLIENT_CERT_FILE."},
			"client_key_file": schema.StringAttribute{Optional: true,
				Description: "Its key (PEM). Environment: MCPSTS_CLIENT_KEY_FILE."},
			"token_source": schema.StringAttribute{Optional: true,
				Description: "Instead of a certificate: the evidence source exchanged at the broker for an admin token, as for `mcpsts token --source` (k8s, github, spiffe, aws, gcp, azure, file:PATH, auto). Environment: MCPSTS_TOKEN_SOURCE."},
			"admin_audience": schema.StringAttribute{Optional: true,
				Description: "The audience of admin tokens (default <url>/admin). Environment: MCPSTS_ADMIN_AUDIENCE."},
		},
	}
}

// setting is a configured value, else the environment variable's.
func setting(v types.String, env string) string {
	if !v.IsNull() && !v.IsUnknown() && v.ValueString() != "" {
		return v.ValueString()
	}
	return os.Getenv(env)
}

func (p *mcpstsProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var m providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	issuer := strings.TrimSuffix(setting(m.URL, "MCPSTS_URL"), "/")
	u, err := url.Parse(issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		resp.Diagnostics.AddAttributeError(path.Root("url"), "Invalid broker URL",
			"url (or MCPSTS_URL) must be the broker's https issuer URL, got "+strconv.Quote(issuer))
		return
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca := setting(m.CAFile, "MCPSTS_CA_FILE"); ca != "" {
		pem, err := os.ReadFile(ca)
		pool := x509.NewCertPool()
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			resp.Diagnostics.AddAttributeError(path.Root("ca_file"), "Unreadable CA file", ca+": no PEM certificate could be read")
			return
		}
		tlsCfg.RootCAs = pool
	}
	certFile, keyFile := setting(m.ClientCertFile, "MCPSTS_CLIENT_CERT_FILE"), setting(m.ClientKeyFile, "MCPSTS_CLIENT_KEY_FILE")
	source := setting(m.TokenSource, "MCPSTS_TOKEN_SOURCE")
	switch {
	case certFile != "" && source != "":
		resp.Diagnostics.AddAttributeError(path.Root("token_source"), "Two ways to authenticate",
			"set either client_cert_file and client_key_file, or token_source")
		return
	case certFile == "" && source == "":
		resp.Diagnostics.AddError("No way to authenticate to the admin API",
			"set client_cert_file and client_key_file (an administrator's certificate), or token_source (platform evidence mcpsts exchanges for an admin token); there are no static secrets")
		return
	case certFile != "":
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("client_cert_file"), "Unreadable client certificate", err.Error())
			return
		}
		tlsCfg.Certificates = []tls.Certificate{pair}
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	c := &adminClient{origin: u.Scheme + "://" + u.Host, issuer: issuer, http: hc}
	if source != "" {
		src, err := client.SourceByName(source, os.Getenv)
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("token_source"), "Unknown token source", err.Error())
			return
		}
		bc, err := client.New(issuer, src, client.Options{HTTPClient: hc})
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("url"), "Invalid broker", err.Error())
			return
		}
		audience := setting(m.AdminAudience, "MCPSTS_ADMIN_AUDIENCE")
		if audience == "" {
			audience = issuer + "/admin"
		}
		ts := bc.TokenSource(audience, AdminScope)
		c.token = func(ctx context.Context) (string, error) {
			t, err := ts.Get(ctx)
			if err != nil {
				return "", err
			}
			return t.AccessToken, nil
		}
	}
	resp.ResourceData, resp.DataSourceData = c, c
}

func (p *mcpstsProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{newTrustMapResource, newConsentResource, newFederationProviderResource, newClientResource, newPostureSourceResource}
}

func (p *mcpstsProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{newMetadataDataSource, newExplainDataSource, newImpactDataSource}
}
