package terraform

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// consentResource is a user's consent to one MCP client. Consents are
// immutable: any change replaces it (the old one is revoked).
type consentResource struct{ c *adminClient }

var (
	_ resource.ResourceWithConfigure   = (*consentResource)(nil)
	_ resource.ResourceWithImportState = (*consentResource)(nil)
)

func newConsentResource() resource.Resource { return &consentResource{} }

type consentModel struct {
	ID        types.String `tfsdk:"id"`
	Provider  types.String `tfsdk:"identity_provider"`
	User      types.String `tfsdk:"user"`
	ClientID  types.String `tfsdk:"client_id"`
	Scopes    types.List   `tfsdk:"scopes"`
	Resources types.List   `tfsdk:"resources"`
	ExpiresAt types.String `tfsdk:"expires_at"`
}

type consentJSON struct {
	ID        string    `json:"id,omitempty"`
	User      string    `json:"user"`
	Provider  string    `json:"provider"`
	ClientID  string    `json:"client_id"`
	Scopes    []string  `json:"scopes"`
	Resources []string  `json:"resources"`
	ExpiresAt time.Time `json:"expires_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

func (r *consentResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_consent"
}

func (r *consentResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replaceStr := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	replaceList := []planmodifier.List{listplanmodifier.RequiresReplace()}
	resp.Schema = schema.Schema{
		Description: "A user's consent to one MCP client, for some scopes at some MCP servers, until it expires. Checked at every user-delegated exchange; destroying it revokes it.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, Description: "The consent's ID.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}},
			"identity_provider": schema.StringAttribute{Required: true, PlanModifiers: replaceStr, Description: "The user identity provider (a provider of kind user)."},
			"user":              schema.StringAttribute{Required: true, PlanModifiers: replaceStr, Description: "The user's subject at that provider."},
			"client_id":         schema.StringAttribute{Required: true, PlanModifiers: replaceStr, Description: "The MCP client consented to."},
			"scopes":            schema.ListAttribute{ElementType: types.StringType, Required: true, PlanModifiers: replaceList, Description: "The scopes consented to."},
			"resources":         schema.ListAttribute{ElementType: types.StringType, Required: true, PlanModifiers: replaceList, Description: "The MCP servers (canonical resource URIs)."},
			"expires_at":        schema.StringAttribute{Required: true, PlanModifiers: replaceStr, Description: "When the consent ends (RFC 3339)."},
		},
	}
}

func (r *consentResource) Configure(_ context.Context, req resource.ConfigureRequest, _ *resource.ConfigureResponse) {
	if c, ok := req.ProviderData.(*adminClient); ok {
		r.c = c
	}
}

func stringList(ss []string) types.List {
	vals := make([]attr.Value, len(ss))
	for i, s := range ss {
		vals[i] = types.StringValue(s)
	}
	return types.ListValueMust(types.StringType, vals)
}

func (r *consentResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m consentModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	exp, err := time.Parse(time.RFC3339, m.ExpiresAt.ValueString())
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("expires_at"), "Invalid expiry", "expires_at must be an RFC 3339 time: "+err.Error())
		return
	}
	c := consentJSON{User: m.User.ValueString(), Provider: m.Provider.ValueString(), ClientID: m.ClientID.ValueString(), ExpiresAt: exp}
	resp.Diagnostics.Append(m.Scopes.ElementsAs(ctx, &c.Scopes, false)...)
	resp.Diagnostics.Append(m.Resources.ElementsAs(ctx, &c.Resources, false)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var out consentJSON
	if _, err := r.c.do(ctx, http.MethodPost, "/admin/v1/consents", c, nil, &out); err != nil {
		resp.Diagnostics.AddError("Cannot grant the consent", err.Error())
		return
	}
	m.ID = types.StringValue(out.ID)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// find reads the consent id; nil when it no longer exists or was revoked.
func (r *consentResource) find(ctx context.Context, id string) (*consentJSON, error) {
	var list struct {
		Consents []consentJSON `json:"consents"`
	}
	if _, err := r.c.do(ctx, http.MethodGet, "/admin/v1/consents", nil, nil, &list); err != nil {
		return nil, err
	}
	for _, c := range list.Consents {
		if c.ID == id && c.RevokedAt.IsZero() {
			return &c, nil
		}
	}
	return nil, nil
}

func (r *consentResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m consentModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	c, err := r.find(ctx, m.ID.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("Cannot read consent "+m.ID.ValueString(), err.Error())
		return
	}
	if c == nil { // revoked or removed outside Terraform: the plan grants it again
		resp.State.RemoveResource(ctx)
		return
	}
	m.Provider, m.User, m.ClientID = types.StringValue(c.Provider), types.StringValue(c.User), types.StringValue(c.ClientID)
	m.Scopes, m.Resources = stringList(c.Scopes), stringList(c.Resources)
	if prior, err := time.Parse(time.RFC3339, m.ExpiresAt.ValueString()); err != nil || !prior.Equal(c.ExpiresAt) {
		m.ExpiresAt = types.StringValue(c.ExpiresAt.UTC().Format(time.RFC3339))
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *consentResource) Update(_ context.Context, _ resource.UpdateRequest, resp *resource.UpdateResponse) {
	resp.Diagnostics.AddError("Consents are replaced, not updated", "every attribute of mcpsts_consent forces a new consent")
}

func (r *consentResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m consentModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	_, err := r.c.do(ctx, http.MethodDelete, "/admin/v1/consents/"+url.PathEscape(m.ID.ValueString()), nil, nil, nil)
	if err != nil && !isStatus(err, http.StatusNotFound) {
		resp.Diagnostics.AddError("Cannot revoke consent "+m.ID.ValueString(), err.Error())
	}
}

// ImportState takes a consent ID; Read fills in the rest.
func (r *consentResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
