package terraform

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/mcpsts/mcpsts/internal/config"
)

// federationProviderResource is a trusted token issuer kept in the store:
// the server trusts it from its next reload (trust_maps.reload_interval),
// with the rules of a provider of the configuration file.
type federationProviderResource struct{ d documents }

var (
	_ resource.ResourceWithConfigure      = (*federationProviderResource)(nil)
	_ resource.ResourceWithImportState    = (*federationProviderResource)(nil)
	_ resource.ResourceWithValidateConfig = (*federationProviderResource)(nil)
)

func newFederationProviderResource() resource.Resource { return &federationProviderResource{} }

type federationProviderModel struct {
	ID             types.String `tfsdk:"id"`
	Type           types.String `tfsdk:"type"`
	Issuer         types.String `tfsdk:"issuer"`
	Kind           types.String `tfsdk:"kind"`
	Preset         types.String `tfsdk:"preset"`
	Discovery      types.Bool   `tfsdk:"discovery"`
	JWKSURI        types.String `tfsdk:"jwks_uri"`
	JWKS           types.String `tfsdk:"jwks"`
	CAFile         types.String `tfsdk:"ca_file"`
	Algorithms     types.List   `tfsdk:"algorithms"`
	Audiences      types.List   `tfsdk:"audiences"`
	RequiredClaims types.List   `tfsdk:"required_claims"`
	Typ            types.String `tfsdk:"typ"`
	Leeway         types.String `tfsdk:"leeway"`
	MaxTokenAge    types.String `tfsdk:"max_token_age"`
	SingleUse      types.Bool   `tfsdk:"single_use"`
	IDJAG          types.Bool   `tfsdk:"id_jag"`
	// type spiffe: the trust domain (id) and one bundle source.
	BundleFile        types.String `tfsdk:"bundle_file"`
	WorkloadAPI       types.Bool   `tfsdk:"workload_api"`
	BundleEndpointURL types.String `tfsdk:"bundle_endpoint_url"`
	BundleProfile     types.String `tfsdk:"bundle_endpoint_profile"`
	BundleCAFile      types.String `tfsdk:"bundle_endpoint_ca_file"`
	EndpointSPIFFEID  types.String `tfsdk:"endpoint_spiffe_id"`
	InitialBundleFile types.String `tfsdk:"initial_bundle_file"`
	// type aws.
	STSHosts  types.List   `tfsdk:"sts_hosts"`
	STSCAFile types.String `tfsdk:"sts_ca_file"`
	Version   types.Int64  `tfsdk:"version"`
}

type providerDoc struct {
	Type           *string `json:"type,omitempty"`
	Name           string  `json:"name"`
	Provider       string  `json:"provider"` // aws
	BundleFile     *string `json:"bundle_file,omitempty"`
	WorkloadAPI    *bool   `json:"workload_api,omitempty"`
	BundleEndpoint *struct {
		URL               *string `json:"url"`
		Profile           *string `json:"profile"`
		CAFile            *string `json:"ca_file"`
		EndpointSPIFFEID  *string `json:"endpoint_spiffe_id"`
		InitialBundleFile *string `json:"initial_bundle_file"`
	} `json:"bundle_endpoint,omitempty"`
	STSHosts       []string `json:"sts_hosts,omitempty"`
	STSCAFile      *string  `json:"sts_ca_file,omitempty"`
	Issuer         *string  `json:"issuer,omitempty"`
	Kind           *string  `json:"kind,omitempty"`
	Preset         *string  `json:"preset,omitempty"`
	Discovery      *bool    `json:"discovery,omitempty"`
	JWKSURI        *string  `json:"jwks_uri,omitempty"`
	JWKS           *string  `json:"jwks,omitempty"`
	CAFile         *string  `json:"ca_file,omitempty"`
	Algorithms     []string `json:"algorithms,omitempty"`
	Audiences      []string `json:"audiences,omitempty"`
	RequiredClaims []string `json:"required_claims,omitempty"`
	Typ            *string  `json:"typ,omitempty"`
	Leeway         *string  `json:"leeway,omitempty"`
	MaxTokenAge    *string  `json:"max_token_age,omitempty"`
	SingleUse      *bool    `json:"single_use,omitempty"`
	IDJAG          *bool    `json:"id_jag,omitempty"`
}

func (r *federationProviderResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_federation_provider"
}

func (r *federationProviderResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	opt := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{Optional: true, Description: desc}
	}
	list := func(desc string) schema.ListAttribute {
		return schema.ListAttribute{ElementType: types.StringType, Optional: true, Description: desc}
	}
	resp.Schema = schema.Schema{
		Description: "A trusted provider kept in the broker's store and trusted from the server's next reload: an OIDC issuer (Kubernetes, GitHub Actions, GitLab, Google, Entra ID, any issuer) with its key source, a SPIFFE trust domain with its bundle source, or AWS IAM (signed GetCallerIdentity requests).",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Required: true, Description: "The provider's name, which trust maps match on: for spiffe the trust domain, for aws the provider name (usually aws).",
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()}},
			"type": schema.StringAttribute{Optional: true, Description: "oidc (default), spiffe or aws.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()}},
			"issuer":                  opt("oidc: the issuer, matched exactly against iss."),
			"bundle_file":             opt("spiffe: a SPIFFE bundle file on the broker's machine."),
			"workload_api":            schema.BoolAttribute{Optional: true, Description: "spiffe: the bundle from the broker's SPIFFE Workload API."},
			"bundle_endpoint_url":     opt("spiffe: a bundle endpoint (https)."),
			"bundle_endpoint_profile": opt("spiffe: https_web or https_spiffe."),
			"bundle_endpoint_ca_file": opt("spiffe: a CA file for an https_web endpoint."),
			"endpoint_spiffe_id":      opt("spiffe: the SPIFFE ID of an https_spiffe endpoint."),
			"initial_bundle_file":     opt("spiffe: the bundle that authenticates an https_spiffe endpoint first."),
			"sts_hosts":               list("aws: the STS endpoints allowed (default the global and regional sts.*.amazonaws.com)."),
			"sts_ca_file":             opt("aws: the only CA trusted for STS (a proxy)."),
			"kind":                    opt("workload (default) or user."),
			"preset":                  opt("Claim checks of a platform: generic, kubernetes, github-actions, gitlab, google, azure."),
			"discovery":               schema.BoolAttribute{Optional: true, Description: "Keys from OIDC discovery; one key source of discovery, jwks_uri and jwks."},
			"jwks_uri":                opt("Keys from this https URL."),
			"jwks":                    opt("The key set itself (JSON)."),
			"ca_file":                 opt("A PEM CA file on the broker's machine, the only CA trusted for the issuer's HTTPS."),
			"algorithms":              list("Signing algorithms allowed (default RS256, ES256)."),
			"audiences":               list("The aud values accepted (default: the broker's)."),
			"required_claims":         list("Claims every token must hold."),
			"typ":                     opt("The JOSE typ tokens must have."),
			"leeway":                  opt("Clock leeway (a Go duration)."),
			"max_token_age":           opt("The oldest iat accepted (a Go duration)."),
			"single_use":              schema.BoolAttribute{Optional: true, Description: "Each token gets one exchange."},
			"id_jag":                  schema.BoolAttribute{Optional: true, Description: "On a user provider: accept its ID-JAGs (enterprise-managed authorization, SEP-990), each once."},
			"version":                 schema.Int64Attribute{Computed: true, Description: "The stored version."},
		},
	}
}

func (r *federationProviderResource) Configure(_ context.Context, req resource.ConfigureRequest, _ *resource.ConfigureResponse) {
	if c, ok := req.ProviderData.(*adminClient); ok {
		r.d = documents{c, "providers"}
	}
}

func (m *federationProviderModel) document(ctx context.Context) ([]byte, diag.Diagnostics) {
	var diags diag.Diagnostics
	var doc map[string]any
	switch m.Type.ValueString() {
	case "spiffe":
		doc = map[string]any{"type": "spiffe", "name": m.ID.ValueString(), "bundle_file": docString(m.BundleFile), "workload_api": docBool(m.WorkloadAPI)}
		if !m.BundleEndpointURL.IsNull() {
			doc["bundle_endpoint"] = compact(map[string]any{"url": docString(m.BundleEndpointURL), "profile": docString(m.BundleProfile),
				"ca_file": docString(m.BundleCAFile), "endpoint_spiffe_id": docString(m.EndpointSPIFFEID), "initial_bundle_file": docString(m.InitialBundleFile)})
		}
	case "aws":
		doc = map[string]any{"type": "aws", "provider": m.ID.ValueString(), "sts_hosts": docList(ctx, m.STSHosts, &diags),
			"sts_ca_file": docString(m.STSCAFile), "single_use": docBool(m.SingleUse)}
	default:
		doc = map[string]any{"type": docString(m.Type),
			"name": m.ID.ValueString(), "issuer": docString(m.Issuer), "kind": docString(m.Kind), "preset": docString(m.Preset),
			"discovery": docBool(m.Discovery), "jwks_uri": docString(m.JWKSURI), "jwks": docString(m.JWKS), "ca_file": docString(m.CAFile),
			"algorithms": docList(ctx, m.Algorithms, &diags), "audiences": docList(ctx, m.Audiences, &diags),
			"required_claims": docList(ctx, m.RequiredClaims, &diags), "typ": docString(m.Typ), "leeway": docString(m.Leeway),
			"max_token_age": docString(m.MaxTokenAge), "single_use": docBool(m.SingleUse), "id_jag": docBool(m.IDJAG),
		}
	}
	b, err := json.Marshal(compact(doc))
	if err != nil {
		diags.AddError("Cannot encode the provider", err.Error())
	}
	return b, diags
}

func (m *federationProviderModel) fromDocument(raw []byte, version int64) error {
	var d providerDoc
	if err := json.Unmarshal(raw, &d); err != nil {
		return err
	}
	id := d.Name
	if d.Type != nil && *d.Type == "aws" {
		id = d.Provider
		if id == "" {
			id = "aws"
		}
	}
	*m = federationProviderModel{ID: types.StringValue(id), Type: strValue(d.Type), Issuer: strValue(d.Issuer), Kind: strValue(d.Kind), Preset: strValue(d.Preset),
		Discovery: boolValue(d.Discovery), JWKSURI: strValue(d.JWKSURI), JWKS: strValue(d.JWKS), CAFile: strValue(d.CAFile),
		Algorithms: listValue(d.Algorithms), Audiences: listValue(d.Audiences), RequiredClaims: listValue(d.RequiredClaims),
		Typ: strValue(d.Typ), Leeway: strValue(d.Leeway), MaxTokenAge: strValue(d.MaxTokenAge), SingleUse: boolValue(d.SingleUse), IDJAG: boolValue(d.IDJAG),
		BundleFile: strValue(d.BundleFile), WorkloadAPI: boolValue(d.WorkloadAPI),
		BundleEndpointURL: types.StringNull(), BundleProfile: types.StringNull(), BundleCAFile: types.StringNull(),
		EndpointSPIFFEID: types.StringNull(), InitialBundleFile: types.StringNull(),
		STSHosts: listValue(d.STSHosts), STSCAFile: strValue(d.STSCAFile), Version: types.Int64Value(version)}
	if ep := d.BundleEndpoint; ep != nil {
		m.BundleEndpointURL, m.BundleProfile, m.BundleCAFile = strValue(ep.URL), strValue(ep.Profile), strValue(ep.CAFile)
		m.EndpointSPIFFEID, m.InitialBundleFile = strValue(ep.EndpointSPIFFEID), strValue(ep.InitialBundleFile)
	}
	return nil
}

// ValidateConfig applies the server's rules for providers at plan time.
// (ca_file is checked where the server runs, at apply.)
func (r *federationProviderResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m federationProviderModel
	if !req.Config.Raw.IsFullyKnown() || req.Config.Get(ctx, &m).HasError() {
		return
	}
	doc, diags := m.document(ctx)
	if diags.HasError() {
		return
	}
	_, err := config.ParseFederationDocument(m.ID.ValueString(), doc)
	addConfigProblems(&resp.Diagnostics, "Invalid federation provider", err, map[string]string{"name": "id", "provider": "id",
		"bundle_endpoint.url": "bundle_endpoint_url", "bundle_endpoint.profile": "bundle_endpoint_profile",
		"bundle_endpoint.ca_file": "bundle_endpoint_ca_file", "bundle_endpoint.endpoint_spiffe_id": "endpoint_spiffe_id",
		"bundle_endpoint.initial_bundle_file": "initial_bundle_file"})
}

// addConfigProblems reports the problems of a document checked by the
// configuration file's rules, each on its attribute (fields renamed by
// rename). Files are the broker's: they are checked where it runs, at
// apply.
func addConfigProblems(diags *diag.Diagnostics, title string, err error, rename map[string]string) {
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var fe *config.FieldError
		if errors.As(e, &fe) && strings.Contains(fe.Msg, "no such file") {
			continue
		}
		if !errors.As(e, &fe) || fe.Path == "" {
			diags.AddError(title, e.Error())
			continue
		}
		field := fe.Path
		if f, ok := rename[field]; ok {
			field = f
		}
		diags.AddAttributeError(fieldPath(field), title, fe.Path+": "+fe.Msg)
	}
}

func (m *federationProviderModel) key() string    { return m.ID.ValueString() }
func (m *federationProviderModel) ver() int64     { return m.Version.ValueInt64() }
func (m *federationProviderModel) setVer(v int64) { m.Version = types.Int64Value(v) }

const providerWhat = "federation provider"

func (r *federationProviderResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	docCreate[federationProviderModel](ctx, r.d, providerWhat, req.Plan, &resp.State, &resp.Diagnostics)
}

func (r *federationProviderResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	docRead[federationProviderModel](ctx, r.d, providerWhat, &resp.State, &resp.Diagnostics)
}

func (r *federationProviderResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	docUpdate[federationProviderModel](ctx, r.d, providerWhat, req.Plan, req.State, &resp.State, &resp.Diagnostics)
}

func (r *federationProviderResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	docDelete[federationProviderModel](ctx, r.d, providerWhat, req.State, &resp.Diagnostics)
}

func (r *federationProviderResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
