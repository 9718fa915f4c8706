package terraform

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// metadataDataSource reads the broker's authorization server metadata.
type metadataDataSource struct{ c *adminClient }

func newMetadataDataSource() datasource.DataSource { return &metadataDataSource{} }

type metadataModel struct {
	Issuer                types.String `tfsdk:"issuer"`
	JWKSURI               types.String `tfsdk:"jwks_uri"`
	TokenEndpoint         types.String `tfsdk:"token_endpoint"`
	AuthorizationEndpoint types.String `tfsdk:"authorization_endpoint"`
	GrantTypesSupported   types.List   `tfsdk:"grant_types_supported"`
}

func (d *metadataDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_metadata"
}

func (d *metadataDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	computed := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{Computed: true, Description: desc}
	}
	resp.Schema = schema.Schema{
		Description: "The broker's RFC 8414 metadata: its issuer, keys and endpoints.",
		Attributes: map[string]schema.Attribute{
			"issuer":                 computed("The issuer identifier."),
			"jwks_uri":               computed("Where its signing keys are published."),
			"token_endpoint":         computed("The token endpoint."),
			"authorization_endpoint": computed("The authorization endpoint."),
			"grant_types_supported":  schema.ListAttribute{ElementType: types.StringType, Computed: true, Description: "The grants the token endpoint takes."},
		},
	}
}

func (d *metadataDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, _ *datasource.ConfigureResponse) {
	if c, ok := req.ProviderData.(*adminClient); ok {
		d.c = c
	}
}

func (d *metadataDataSource) Read(ctx context.Context, _ datasource.ReadRequest, resp *datasource.ReadResponse) {
	var doc struct {
		Issuer                string   `json:"issuer"`
		JWKSURI               string   `json:"jwks_uri"`
		TokenEndpoint         string   `json:"token_endpoint"`
		AuthorizationEndpoint string   `json:"authorization_endpoint"`
		GrantTypesSupported   []string `json:"grant_types_supported"`
	}
	if err := d.c.wellKnown(ctx, d.c.metadataURL(), &doc); err != nil {
		resp.Diagnostics.AddError("Cannot read the broker's metadata", err.Error())
		return
	}
	if doc.Issuer != d.c.issuer {
		resp.Diagnostics.AddError("Wrong broker", "the metadata names issuer "+doc.Issuer+", not "+d.c.issuer)
		return
	}
	m := metadataModel{Issuer: types.StringValue(doc.Issuer), JWKSURI: types.StringValue(doc.JWKSURI), TokenEndpoint: types.StringValue(doc.TokenEndpoint),
		AuthorizationEndpoint: types.StringValue(doc.AuthorizationEndpoint), GrantTypesSupported: stringList(doc.GrantTypesSupported)}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// explainDataSource evaluates an identity and a request against the maps
// in force, so that a plan shows who gains or loses access.
type explainDataSource struct{ c *adminClient }

func newExplainDataSource() datasource.DataSource { return &explainDataSource{} }

type explainModel struct {
	Provider   types.String `tfsdk:"identity_provider"`
	Subject    types.String `tfsdk:"subject"`
	Attributes types.Map    `tfsdk:"attributes"`
	Audience   types.String `tfsdk:"audience"`
	Scopes     types.List   `tfsdk:"scopes"`
	SourceIP   types.String `tfsdk:"source_ip"`
	Context    types.String `tfsdk:"context_json"`
	Allowed    types.Bool   `tfsdk:"allowed"`
	MapID      types.String `tfsdk:"map_id"`
	ClientID   types.String `tfsdk:"client_id"`
	Granted    types.List   `tfsdk:"granted_scopes"`
	Denial     types.String `tfsdk:"denial"`
	Trace      types.String `tfsdk:"trace"`
}

func (d *explainDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_explain"
}

func (d *explainDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Evaluates an identity and a request against the trust maps in force and returns the decision and its trace.",
		Attributes: map[string]schema.Attribute{
			"identity_provider": schema.StringAttribute{Required: true, Description: "The provider that vouches for the identity."},
			"subject":           schema.StringAttribute{Required: true, Description: "The identity's subject."},
			"attributes":        schema.MapAttribute{ElementType: types.StringType, Optional: true, Description: "The identity's claims (string values)."},
			"audience":          schema.StringAttribute{Required: true, Description: "The MCP server asked for."},
			"scopes":            schema.ListAttribute{ElementType: types.StringType, Optional: true, Description: "The scopes asked for."},
			"source_ip":         schema.StringAttribute{Optional: true, Description: "The client's address: CIDR and geolocation conditions read it, and the trace gives its place."},
			"context_json":      schema.StringAttribute{Optional: true, Description: "Posture attributes by source, JSON (`{\"edr\": {\"compliant\": true, \"score\": 80}}`): what conditions read as context.<source>. The trace lists the attributes the maps read."},
			"allowed":           schema.BoolAttribute{Computed: true, Description: "Whether a token would be issued."},
			"map_id":            schema.StringAttribute{Computed: true, Description: "The deciding map."},
			"client_id":         schema.StringAttribute{Computed: true, Description: "The MCP client the identity would act as."},
			"granted_scopes":    schema.ListAttribute{ElementType: types.StringType, Computed: true, Description: "The scopes the token would carry."},
			"denial":            schema.StringAttribute{Computed: true, Description: "The reason code when denied."},
			"trace":             schema.StringAttribute{Computed: true, Description: "The full explain trace, JSON."},
		},
	}
}

func (d *explainDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, _ *datasource.ConfigureResponse) {
	if c, ok := req.ProviderData.(*adminClient); ok {
		d.c = c
	}
}

func (d *explainDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m explainModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	attrs := map[string]string{}
	if !m.Attributes.IsNull() {
		resp.Diagnostics.Append(m.Attributes.ElementsAs(ctx, &attrs, false)...)
	}
	var scopes []string
	if !m.Scopes.IsNull() {
		resp.Diagnostics.Append(m.Scopes.ElementsAs(ctx, &scopes, false)...)
	}
	request := map[string]any{"audience": m.Audience.ValueString(), "scopes": scopes, "source_ip": m.SourceIP.ValueString()}
	if c := m.Context.ValueString(); c != "" {
		var postureContext map[string]any
		if err := json.Unmarshal([]byte(c), &postureContext); err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("context_json"), "Invalid context_json", "want a JSON object of attributes by posture source: "+err.Error())
			return
		}
		request["context"] = postureContext
	}
	body := map[string]any{
		"identity": map[string]any{"provider": m.Provider.ValueString(), "subject": m.Subject.ValueString(), "attributes": attrs},
		"request":  request,
	}
	var raw json.RawMessage
	if _, err := d.c.do(ctx, http.MethodPost, "/admin/v1/explain", body, nil, &raw); err != nil {
		resp.Diagnostics.AddError("Cannot explain", err.Error())
		return
	}
	var tr struct {
		Decision *struct {
			MapID    string   `json:"map_id"`
			ClientID string   `json:"client_id"`
			Scopes   []string `json:"scopes"`
		} `json:"decision"`
		Denial string `json:"denial"`
	}
	json.Unmarshal(raw, &tr)
	m.Allowed, m.Denial, m.Trace = types.BoolValue(tr.Decision != nil), types.StringValue(tr.Denial), types.StringValue(string(raw))
	m.MapID, m.ClientID, m.Granted = types.StringNull(), types.StringNull(), types.ListNull(types.StringType)
	if tr.Decision != nil {
		m.MapID, m.ClientID, m.Granted = types.StringValue(tr.Decision.MapID), types.StringValue(tr.Decision.ClientID), stringList(tr.Decision.Scopes)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}
