package terraform

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/mcpsts/mcpsts/exchange"
)

// clientResource is a registered MCP client: a registered client gets
// tokens only with its grant types.
type clientResource struct{ d documents }

var (
	_ resource.ResourceWithConfigure      = (*clientResource)(nil)
	_ resource.ResourceWithImportState    = (*clientResource)(nil)
	_ resource.ResourceWithValidateConfig = (*clientResource)(nil)
)

func newClientResource() resource.Resource { return &clientResource{} }

type clientModel struct {
	ID           types.String `tfsdk:"id"`
	Name         types.String `tfsdk:"name"`
	GrantTypes   types.List   `tfsdk:"grant_types"`
	RedirectURIs types.List   `tfsdk:"redirect_uris"`
	Version      types.Int64  `tfsdk:"version"`
}

func (r *clientResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_client"
}

func (r *clientResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "A registered MCP client: its name, the grant types it may use (others are refused with unauthorized_client) and the exact redirect URIs of its browser flows.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Required: true, Description: "The client ID (as the trust maps give it out).",
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()}},
			"name":          schema.StringAttribute{Optional: true, Description: "A human-readable name."},
			"grant_types":   schema.ListAttribute{ElementType: types.StringType, Required: true, Description: "Grant types it may use."},
			"redirect_uris": schema.ListAttribute{ElementType: types.StringType, Optional: true, Description: "Exact redirect URIs: https, or http on loopback."},
			"version":       schema.Int64Attribute{Computed: true, Description: "The stored version."},
		},
	}
}

func (r *clientResource) Configure(_ context.Context, req resource.ConfigureRequest, _ *resource.ConfigureResponse) {
	if c, ok := req.ProviderData.(*adminClient); ok {
		r.d = documents{c, "clients"}
	}
}

func (m *clientModel) document(ctx context.Context) ([]byte, diag.Diagnostics) {
	var diags diag.Diagnostics
	b, err := json.Marshal(compact(map[string]any{
		"client_id": m.ID.ValueString(), "name": docString(m.Name),
		"grant_types": docList(ctx, m.GrantTypes, &diags), "redirect_uris": docList(ctx, m.RedirectURIs, &diags),
	}))
	if err != nil {
		diags.AddError("Cannot encode the client", err.Error())
	}
	return b, diags
}

func (r *clientResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m clientModel
	if !req.Config.Raw.IsFullyKnown() || req.Config.Get(ctx, &m).HasError() {
		return
	}
	doc, diags := m.document(ctx)
	if diags.HasError() {
		return
	}
	if _, err := exchange.ParseClient(doc); err != nil {
		addProblems(&resp.Diagnostics, "Invalid client", strings.Split(err.Error(), "\n"), map[string]string{"client_id": "id"})
	}
}

func (m *clientModel) key() string    { return m.ID.ValueString() }
func (m *clientModel) ver() int64     { return m.Version.ValueInt64() }
func (m *clientModel) setVer(v int64) { m.Version = types.Int64Value(v) }

func (m *clientModel) fromDocument(raw []byte, version int64) error {
	var d struct {
		ClientID     string   `json:"client_id"`
		Name         *string  `json:"name"`
		GrantTypes   []string `json:"grant_types"`
		RedirectURIs []string `json:"redirect_uris"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return err
	}
	*m = clientModel{ID: types.StringValue(d.ClientID), Name: strValue(d.Name), GrantTypes: listValue(d.GrantTypes),
		RedirectURIs: listValue(d.RedirectURIs), Version: types.Int64Value(version)}
	return nil
}

func (r *clientResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	docCreate[clientModel](ctx, r.d, "client", req.Plan, &resp.State, &resp.Diagnostics)
}

func (r *clientResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	docRead[clientModel](ctx, r.d, "client", &resp.State, &resp.Diagnostics)
}

func (r *clientResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	docUpdate[clientModel](ctx, r.d, "client", req.Plan, req.State, &resp.State, &resp.Diagnostics)
}

func (r *clientResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	docDelete[clientModel](ctx, r.d, "client", req.State, &resp.Diagnostics)
}

func (r *clientResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
