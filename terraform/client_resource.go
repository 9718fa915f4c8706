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

func (m clientModel) document(ctx context.Context) ([]byte, diag.Diagnostics) {
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

func (r *clientResource) write(ctx context.Context, m *clientModel, version int64, diags *diag.Diagnostics) {
	doc, d := m.document(ctx)
	diags.Append(d...)
	if diags.HasError() {
		return
	}
	v, err := r.d.put(ctx, m.ID.ValueString(), doc, version)
	if err != nil {
		diags.AddError("Cannot write client "+m.ID.ValueString(), err.Error())
		return
	}
	m.Version = types.Int64Value(v)
}

func (r *clientResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m clientModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if !resp.Diagnostics.HasError() {
		r.write(ctx, &m, 0, &resp.Diagnostics)
	}
	if !resp.Diagnostics.HasError() {
		resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
	}
}

func (r *clientResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m clientModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	doc, version, found, err := r.d.get(ctx, m.ID.ValueString())
	switch {
	case err != nil:
		resp.Diagnostics.AddError("Cannot read client "+m.ID.ValueString(), err.Error())
		return
	case !found:
		resp.State.RemoveResource(ctx)
		return
	}
	var d struct {
		ClientID     string   `json:"client_id"`
		Name         *string  `json:"name"`
		GrantTypes   []string `json:"grant_types"`
		RedirectURIs []string `json:"redirect_uris"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		resp.Diagnostics.AddError("Cannot read client "+m.ID.ValueString(), err.Error())
		return
	}
	m = clientModel{ID: types.StringValue(d.ClientID), Name: strValue(d.Name), GrantTypes: listValue(d.GrantTypes),
		RedirectURIs: listValue(d.RedirectURIs), Version: types.Int64Value(version)}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *clientResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var m, prior clientModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if !resp.Diagnostics.HasError() {
		r.write(ctx, &m, prior.Version.ValueInt64(), &resp.Diagnostics)
	}
	if !resp.Diagnostics.HasError() {
		resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
	}
}

func (r *clientResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m clientModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if err := r.d.delete(ctx, m.ID.ValueString(), m.Version.ValueInt64()); err != nil {
		resp.Diagnostics.AddError("Cannot delete client "+m.ID.ValueString(), err.Error())
	}
}

func (r *clientResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
