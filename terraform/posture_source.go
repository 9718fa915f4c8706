package terraform

import (
	"context"
	"encoding/json"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/mcpsts/mcpsts/internal/config"
)

// postureSourceResource is a posture source kept in the store: the server
// asks it from its next reload (trust_maps.reload_interval), with the rules
// of a posture source of the configuration file.
type postureSourceResource struct{ d documents }

var (
	_ resource.ResourceWithConfigure      = (*postureSourceResource)(nil)
	_ resource.ResourceWithImportState    = (*postureSourceResource)(nil)
	_ resource.ResourceWithValidateConfig = (*postureSourceResource)(nil)
)

func newPostureSourceResource() resource.Resource { return &postureSourceResource{} }

type postureSourceModel struct {
	ID            types.String `tfsdk:"id"`
	Kind          types.String `tfsdk:"kind"`
	OnError       types.String `tfsdk:"on_error"`
	Issuer        types.String `tfsdk:"issuer"`
	Discovery     types.Bool   `tfsdk:"discovery"`
	JWKSURI       types.String `tfsdk:"jwks_uri"`
	JWKS          types.String `tfsdk:"jwks"`
	Algorithms    types.List   `tfsdk:"algorithms"`
	Audience      types.String `tfsdk:"audience"`
	MaxAge        types.String `tfsdk:"max_age"`
	Preset        types.String `tfsdk:"preset"`
	BindClaim     types.String `tfsdk:"bind_claim"`
	BindIdentity  types.String `tfsdk:"bind_identity"`
	BindProviders types.List   `tfsdk:"bind_providers"`
	URL           types.String `tfsdk:"url"`
	CertFile      types.String `tfsdk:"cert_file"`
	KeyFile       types.String `tfsdk:"key_file"`
	Timeout       types.String `tfsdk:"timeout"`
	CacheTTL      types.String `tfsdk:"cache_ttl"`
	CAFile        types.String `tfsdk:"ca_file"`
	Version       types.Int64  `tfsdk:"version"`
}

type postureSourceDoc struct {
	Name       string   `json:"name"`
	Kind       *string  `json:"kind"`
	OnError    *string  `json:"on_error"`
	Issuer     *string  `json:"issuer"`
	Discovery  *bool    `json:"discovery"`
	JWKSURI    *string  `json:"jwks_uri"`
	JWKS       *string  `json:"jwks"`
	Algorithms []string `json:"algorithms"`
	Audience   *string  `json:"audience"`
	MaxAge     *string  `json:"max_age"`
	Preset     *string  `json:"preset"`
	Bind       *struct {
		Claim     *string  `json:"claim"`
		Identity  *string  `json:"identity"`
		Providers []string `json:"providers"`
	} `json:"bind"`
	URL      *string `json:"url"`
	CertFile *string `json:"cert_file"`
	KeyFile  *string `json:"key_file"`
	Timeout  *string `json:"timeout"`
	CacheTTL *string `json:"cache_ttl"`
	CAFile   *string `json:"ca_file"`
}

func (r *postureSourceResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_posture_source"
}

func (r *postureSourceResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	str := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{Optional: true, Description: desc}
	}
	resp.Schema = schema.Schema{
		Description: "A source of security posture that trust-map conditions read as context.<id>: signed assertions the agents push (kind assertion, sent as posture_token) or attributes the broker pulls for each identity (kind pull).",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Required: true, Description: "The source's name: conditions read context.<id>.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()}},
			"kind":          schema.StringAttribute{Required: true, Description: "assertion or pull."},
			"on_error":      str("deny (the default: a source that fails makes every map that reads it false) or absent (as if it had said nothing)."),
			"issuer":        str("assertion: the issuer, matched exactly."),
			"discovery":     schema.BoolAttribute{Optional: true, Description: "assertion: find the key set by OIDC discovery."},
			"jwks_uri":      str("assertion: the key set's https URL."),
			"jwks":          str("assertion: the key set itself, JSON."),
			"algorithms":    schema.ListAttribute{ElementType: types.StringType, Optional: true, Description: "assertion: the algorithms allowed."},
			"audience":      str("assertion: the aud every assertion must carry, when the issuer sets one."),
			"max_age":       str("assertion: refuse assertions issued longer ago (default 1h)."),
			"preset":        str("assertion: generic (every claim is an attribute)."),
			"bind_claim":    str("assertion: the claim that names the workload or host (default sub)."),
			"bind_identity": str("assertion: what of the verified identity it must equal: subject or attributes.<name>."),
			"bind_providers": schema.ListAttribute{ElementType: types.StringType, Optional: true,
				Description: "assertion: the providers whose identities the assertions describe (required): an equal subject from another provider is another workload."},
			"url":       str("pull: the https endpoint asked with the verified identity."),
			"cert_file": str("pull: the broker's client certificate (mTLS), on the broker's machine."),
			"key_file":  str("pull: its private key, on the broker's machine."),
			"timeout":   str("pull: how long an answer may take (default 2s, at most 30s)."),
			"cache_ttl": str("pull: how long an identity's answer is reused (default 1m, at most 10m)."),
			"ca_file":   str("The CA to trust for the issuer's or the endpoint's TLS, on the broker's machine."),
			"version":   schema.Int64Attribute{Computed: true, Description: "The stored version."},
		},
	}
}

func (r *postureSourceResource) Configure(_ context.Context, req resource.ConfigureRequest, _ *resource.ConfigureResponse) {
	if c, ok := req.ProviderData.(*adminClient); ok {
		r.d = documents{c, "posture-sources"}
	}
}

func (m *postureSourceModel) document(ctx context.Context) ([]byte, diag.Diagnostics) {
	var diags diag.Diagnostics
	doc := map[string]any{
		"name": m.ID.ValueString(), "kind": docString(m.Kind), "on_error": docString(m.OnError), "issuer": docString(m.Issuer),
		"discovery": docBool(m.Discovery), "jwks_uri": docString(m.JWKSURI), "jwks": docString(m.JWKS),
		"algorithms": docList(ctx, m.Algorithms, &diags), "audience": docString(m.Audience), "max_age": docString(m.MaxAge),
		"preset": docString(m.Preset), "url": docString(m.URL), "cert_file": docString(m.CertFile), "key_file": docString(m.KeyFile),
		"timeout": docString(m.Timeout), "cache_ttl": docString(m.CacheTTL), "ca_file": docString(m.CAFile),
	}
	if bind := compact(map[string]any{"claim": docString(m.BindClaim), "identity": docString(m.BindIdentity),
		"providers": docList(ctx, m.BindProviders, &diags)}); len(bind) > 0 {
		doc["bind"] = bind
	}
	b, err := json.Marshal(compact(doc))
	if err != nil {
		diags.AddError("Cannot encode the posture source", err.Error())
	}
	return b, diags
}

// ValidateConfig applies the server's rules for posture sources at plan
// time.
func (r *postureSourceResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m postureSourceModel
	if !req.Config.Raw.IsFullyKnown() || req.Config.Get(ctx, &m).HasError() {
		return
	}
	doc, diags := m.document(ctx)
	if diags.HasError() {
		return
	}
	_, err := config.ParsePostureSource(m.ID.ValueString(), doc)
	addConfigProblems(&resp.Diagnostics, "Invalid posture source", err,
		map[string]string{"name": "id", "bind.claim": "bind_claim", "bind.identity": "bind_identity", "bind.providers": "bind_providers", "bind": "bind_identity"})
}

func (m *postureSourceModel) key() string    { return m.ID.ValueString() }
func (m *postureSourceModel) ver() int64     { return m.Version.ValueInt64() }
func (m *postureSourceModel) setVer(v int64) { m.Version = types.Int64Value(v) }

func (m *postureSourceModel) fromDocument(raw []byte, version int64) error {
	var d postureSourceDoc
	if err := json.Unmarshal(raw, &d); err != nil {
		return err
	}
	*m = postureSourceModel{ID: types.StringValue(d.Name), Kind: strValue(d.Kind), OnError: strValue(d.OnError), Issuer: strValue(d.Issuer),
		Discovery: boolValue(d.Discovery), JWKSURI: strValue(d.JWKSURI), JWKS: strValue(d.JWKS), Algorithms: listValue(d.Algorithms),
		Audience: strValue(d.Audience), MaxAge: strValue(d.MaxAge), Preset: strValue(d.Preset),
		BindClaim: types.StringNull(), BindIdentity: types.StringNull(), BindProviders: types.ListNull(types.StringType),
		URL: strValue(d.URL), CertFile: strValue(d.CertFile), KeyFile: strValue(d.KeyFile), Timeout: strValue(d.Timeout),
		CacheTTL: strValue(d.CacheTTL), CAFile: strValue(d.CAFile), Version: types.Int64Value(version)}
	if d.Bind != nil {
		m.BindClaim, m.BindIdentity, m.BindProviders = strValue(d.Bind.Claim), strValue(d.Bind.Identity), listValue(d.Bind.Providers)
	}
	return nil
}

const postureWhat = "posture source"

func (r *postureSourceResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	docCreate[postureSourceModel](ctx, r.d, postureWhat, req.Plan, &resp.State, &resp.Diagnostics)
}

func (r *postureSourceResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	docRead[postureSourceModel](ctx, r.d, postureWhat, &resp.State, &resp.Diagnostics)
}

func (r *postureSourceResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	docUpdate[postureSourceModel](ctx, r.d, postureWhat, req.Plan, req.State, &resp.State, &resp.Diagnostics)
}

func (r *postureSourceResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	docDelete[postureSourceModel](ctx, r.d, postureWhat, req.State, &resp.Diagnostics)
}

func (r *postureSourceResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
