package terraform

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/mcpsts/mcpsts/trustmaps"
)

type trustMapResource struct{ c *adminClient }

var (
	_ resource.ResourceWithConfigure      = (*trustMapResource)(nil)
	_ resource.ResourceWithImportState    = (*trustMapResource)(nil)
	_ resource.ResourceWithValidateConfig = (*trustMapResource)(nil)
)

func newTrustMapResource() resource.Resource { return &trustMapResource{} }

type trustMapModel struct {
	ID          types.String `tfsdk:"id"`
	Description types.String `tfsdk:"description"`
	Priority    types.Int64  `tfsdk:"priority"`
	Match       *matchModel  `tfsdk:"match"`
	Grant       *grantModel  `tfsdk:"grant"`
	Version     types.Int64  `tfsdk:"version"`
}

type matchModel struct {
	Provider       types.String `tfsdk:"provider"`
	Subject        types.String `tfsdk:"subject"`
	SubjectPattern types.String `tfsdk:"subject_pattern"`
	Conditions     types.List   `tfsdk:"conditions"`
}

type grantModel struct {
	ClientID       types.String `tfsdk:"client_id"`
	ClientIDExpr   types.String `tfsdk:"client_id_expr"`
	Audiences      types.List   `tfsdk:"audiences"`
	Scopes         types.List   `tfsdk:"scopes"`
	DefaultScopes  types.List   `tfsdk:"default_scopes"`
	MaxTTL         types.String `tfsdk:"max_ttl"`
	Claims         types.Map    `tfsdk:"claims"`
	RequireBinding types.String `tfsdk:"require_binding"`
	SingleUse      types.Bool   `tfsdk:"single_use"`
	MayAct         []actorModel `tfsdk:"may_act"`
	AuthServers    types.List   `tfsdk:"authorization_servers"`
}

type actorModel struct {
	Provider       types.String `tfsdk:"provider"`
	Subject        types.String `tfsdk:"subject"`
	SubjectPattern types.String `tfsdk:"subject_pattern"`
}

func (r *trustMapResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_trust_map"
}

func (r *trustMapResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	str := func(required bool, desc string) schema.StringAttribute {
		return schema.StringAttribute{Required: required, Optional: !required, Description: desc}
	}
	list := func(required bool, desc string) schema.ListAttribute {
		return schema.ListAttribute{ElementType: types.StringType, Required: required, Optional: !required, Description: desc}
	}
	resp.Schema = schema.Schema{
		Description: "A trust map: which verified workload identities may act as which MCP client, with which scopes, for which MCP servers, under which conditions. Validated at plan time with the server's own compiler.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Required: true, Description: "The map's ID.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()}},
			"description": str(false, "What the map is for."),
			"priority": schema.Int64Attribute{Optional: true, Computed: true, Default: int64default.StaticInt64(0),
				Description: "Lower first; ties are broken by ID."},
			"version": schema.Int64Attribute{Computed: true, Description: "The stored version, for optimistic concurrency."},
			"match": schema.SingleNestedAttribute{Required: true, Description: "Which identities the map is about.",
				Attributes: map[string]schema.Attribute{
					"provider":        str(true, "The provider (or attestor) that verified the identity."),
					"subject":         str(false, "The exact subject; one of subject and subject_pattern."),
					"subject_pattern": str(false, "An RE2 expression matched against the whole subject."),
					"conditions":      list(false, "CEL expressions that must all be true."),
				}},
			"grant": schema.SingleNestedAttribute{Required: true, Description: "What a matching identity gets.",
				Attributes: map[string]schema.Attribute{
					"client_id":             str(false, "The MCP client the identity acts as; one of client_id and client_id_expr."),
					"client_id_expr":        str(false, "A CEL expression giving the client ID."),
					"audiences":             list(true, "Canonical resource URIs of the MCP servers."),
					"scopes":                list(false, "Scopes the identity may get."),
					"default_scopes":        list(false, "Scopes granted when a request names none; a subset of scopes."),
					"max_ttl":               str(false, "Caps the token lifetime (a Go duration, e.g. 10m)."),
					"claims":                schema.MapAttribute{ElementType: types.StringType, Optional: true, Description: "Claims added to the token (reserved claims cannot be set)."},
					"require_binding":       str(false, "none, mtls or dpop."),
					"single_use":            schema.BoolAttribute{Optional: true, Description: "Tokens valid for one use (claimed at the first introspection)."},
					"authorization_servers": list(false, "Issuers of the authorization servers an ID-JAG (SEP-990) for this identity may name, with mcpsts as the identity provider."),
					"may_act": schema.ListNestedAttribute{Optional: true, Description: "Who may act for this identity in a delegation exchange.",
						NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
							"provider":        str(true, "The actor's provider."),
							"subject":         str(false, "The actor's exact subject."),
							"subject_pattern": str(false, "An RE2 expression for the actor's subject."),
						}}},
				}},
		},
	}
}

func (r *trustMapResource) Configure(_ context.Context, req resource.ConfigureRequest, _ *resource.ConfigureResponse) {
	if c, ok := req.ProviderData.(*adminClient); ok {
		r.c = c
	}
}

// document is the map as the admin API takes it: JSON, only what is set.
func (m trustMapModel) document(ctx context.Context) ([]byte, diag.Diagnostics) {
	var diags diag.Diagnostics
	strs := func(l types.List) []string {
		var out []string
		diags.Append(l.ElementsAs(ctx, &out, false)...)
		if out == nil {
			out = []string{}
		}
		return out
	}
	set := func(doc map[string]any, key string, v types.String) {
		if !v.IsNull() {
			doc[key] = v.ValueString()
		}
	}
	setList := func(doc map[string]any, key string, l types.List) {
		if !l.IsNull() {
			doc[key] = strs(l)
		}
	}
	match := map[string]any{}
	set(match, "provider", m.Match.Provider)
	set(match, "subject", m.Match.Subject)
	set(match, "subject_pattern", m.Match.SubjectPattern)
	setList(match, "conditions", m.Match.Conditions)
	grant := map[string]any{}
	set(grant, "client_id", m.Grant.ClientID)
	set(grant, "client_id_expr", m.Grant.ClientIDExpr)
	setList(grant, "audiences", m.Grant.Audiences)
	setList(grant, "scopes", m.Grant.Scopes)
	setList(grant, "default_scopes", m.Grant.DefaultScopes)
	set(grant, "max_ttl", m.Grant.MaxTTL)
	set(grant, "require_binding", m.Grant.RequireBinding)
	setList(grant, "authorization_servers", m.Grant.AuthServers)
	if !m.Grant.SingleUse.IsNull() {
		grant["single_use"] = m.Grant.SingleUse.ValueBool()
	}
	if !m.Grant.Claims.IsNull() {
		claims := map[string]string{}
		diags.Append(m.Grant.Claims.ElementsAs(ctx, &claims, false)...)
		grant["claims"] = claims
	}
	if m.Grant.MayAct != nil {
		var actors []map[string]any
		for _, a := range m.Grant.MayAct {
			am := map[string]any{}
			set(am, "provider", a.Provider)
			set(am, "subject", a.Subject)
			set(am, "subject_pattern", a.SubjectPattern)
			actors = append(actors, am)
		}
		grant["may_act"] = actors
	}
	doc := map[string]any{"id": m.ID.ValueString(), "match": match, "grant": grant}
	set(doc, "description", m.Description)
	if !m.Priority.IsNull() && !m.Priority.IsUnknown() {
		doc["priority"] = m.Priority.ValueInt64()
	}
	b, err := json.Marshal(doc)
	if err != nil {
		diags.AddError("Cannot encode the trust map", err.Error())
	}
	return b, diags
}

// fromDocument sets m from a stored document.
func (m *trustMapModel) fromDocument(raw []byte, version int64) error {
	var doc struct {
		ID          string  `json:"id"`
		Description *string `json:"description"`
		Priority    int64   `json:"priority"`
		Match       struct {
			Provider       *string  `json:"provider"`
			Subject        *string  `json:"subject"`
			SubjectPattern *string  `json:"subject_pattern"`
			Conditions     []string `json:"conditions"`
		} `json:"match"`
		Grant struct {
			ClientID       *string        `json:"client_id"`
			ClientIDExpr   *string        `json:"client_id_expr"`
			Audiences      []string       `json:"audiences"`
			Scopes         []string       `json:"scopes"`
			DefaultScopes  []string       `json:"default_scopes"`
			MaxTTL         *string        `json:"max_ttl"`
			Claims         map[string]any `json:"claims"`
			RequireBinding *string        `json:"require_binding"`
			SingleUse      *bool          `json:"single_use"`
			AuthServers    []string       `json:"authorization_servers"`
			MayAct         []struct {
				Provider       *string `json:"provider"`
				Subject        *string `json:"subject"`
				SubjectPattern *string `json:"subject_pattern"`
			} `json:"may_act"`
		} `json:"grant"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("the stored trust map is not JSON this provider reads: %w", err)
	}
	str := func(p *string) types.String {
		if p == nil {
			return types.StringNull()
		}
		return types.StringValue(*p)
	}
	list := func(ss []string) types.List {
		if ss == nil {
			return types.ListNull(types.StringType)
		}
		vals := make([]attr.Value, len(ss))
		for i, s := range ss {
			vals[i] = types.StringValue(s)
		}
		return types.ListValueMust(types.StringType, vals)
	}
	m.ID, m.Description, m.Priority, m.Version = types.StringValue(doc.ID), str(doc.Description), types.Int64Value(doc.Priority), types.Int64Value(version)
	m.Match = &matchModel{Provider: str(doc.Match.Provider), Subject: str(doc.Match.Subject), SubjectPattern: str(doc.Match.SubjectPattern), Conditions: list(doc.Match.Conditions)}
	g := &grantModel{ClientID: str(doc.Grant.ClientID), ClientIDExpr: str(doc.Grant.ClientIDExpr), Audiences: list(doc.Grant.Audiences),
		Scopes: list(doc.Grant.Scopes), DefaultScopes: list(doc.Grant.DefaultScopes), MaxTTL: str(doc.Grant.MaxTTL), RequireBinding: str(doc.Grant.RequireBinding),
		Claims: types.MapNull(types.StringType), SingleUse: types.BoolNull(), AuthServers: list(doc.Grant.AuthServers)}
	if doc.Grant.SingleUse != nil {
		g.SingleUse = types.BoolValue(*doc.Grant.SingleUse)
	}
	if doc.Grant.Claims != nil {
		vals := map[string]attr.Value{}
		for k, v := range doc.Grant.Claims {
			s, ok := v.(string)
			if !ok {
				b, _ := json.Marshal(v)
				s = string(b)
			}
			vals[k] = types.StringValue(s)
		}
		g.Claims = types.MapValueMust(types.StringType, vals)
	}
	for _, a := range doc.Grant.MayAct {
		g.MayAct = append(g.MayAct, actorModel{Provider: str(a.Provider), Subject: str(a.Subject), SubjectPattern: str(a.SubjectPattern)})
	}
	m.Grant = g
	return nil
}

// ValidateConfig compiles the map with the server's compiler at plan time,
// so that a plan fails where the server would, with its messages, on the
// attribute at fault. Values not known yet are checked at apply.
func (r *trustMapResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m trustMapModel
	if !req.Config.Raw.IsFullyKnown() {
		return
	}
	if diags := req.Config.Get(ctx, &m); diags.HasError() || m.Match == nil || m.Grant == nil {
		return
	}
	doc, diags := m.document(ctx)
	if diags.HasError() {
		return
	}
	// Whether the broker has a geolocation database is known where it
	// runs: a map that uses geolocation passes the plan, and the admin API
	// refuses it at apply when the broker has none.
	_, err := trustmaps.Options{Places: anyPlaces{}}.Compile(trustmaps.Document{Name: "terraform", Data: doc})
	if err == nil {
		return
	}
	for _, problem := range strings.Split(err.Error(), "\n") {
		at, msg := problemPath(problem)
		if at == nil {
			resp.Diagnostics.AddError("Invalid trust map", msg)
			continue
		}
		resp.Diagnostics.AddAttributeError(*at, "Invalid trust map", msg)
	}
}

// problemRE splits a compiler problem: `trustmaps: terraform:1: map "id": field.path[0]: message`.
var problemRE = regexp.MustCompile(`^trustmaps: [^:]+:\d+: map "[^"]*": ([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*): (.*)$`)

// problemPath maps a compiler problem to the attribute at fault.
func problemPath(problem string) (*path.Path, string) {
	m := problemRE.FindStringSubmatch(problem)
	if m == nil {
		return nil, strings.TrimPrefix(problem, "trustmaps: ")
	}
	p := fieldPath(m[1])
	return &p, m[1] + ": " + m[2]
}

// fieldPath turns a field path of the server's messages (grant.may_act[0].subject)
// into the attribute's path.
func fieldPath(field string) path.Path {
	var p path.Path
	for i, part := range strings.Split(field, ".") {
		name, idx, hasIdx := strings.Cut(part, "[")
		if i == 0 {
			p = path.Root(name)
		} else {
			p = p.AtName(name)
		}
		if hasIdx {
			n, _ := strconv.Atoi(strings.TrimSuffix(idx, "]"))
			p = p.AtListIndex(n)
		}
	}
	return p
}

// fieldProblemRE splits a "field[0]: message" problem.
var fieldProblemRE = regexp.MustCompile(`^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*): (.*)$`)

// addProblems attaches each "field: message" problem to its attribute
// (renamed through rename, e.g. name → id), the others to the resource.
func addProblems(diags *diag.Diagnostics, summary string, problems []string, rename map[string]string) {
	for _, pr := range problems {
		m := fieldProblemRE.FindStringSubmatch(pr)
		if m == nil {
			diags.AddError(summary, pr)
			continue
		}
		field := m[1]
		if r, ok := rename[field]; ok {
			field = r
		}
		diags.AddAttributeError(fieldPath(field), summary, pr)
	}
}

type mapView struct {
	ID      string          `json:"id"`
	Version int64           `json:"version"`
	Map     json.RawMessage `json:"map"`
}

func (r *trustMapResource) put(ctx context.Context, m *trustMapModel, header map[string]string, diags *diag.Diagnostics) {
	doc, d := m.document(ctx)
	diags.Append(d...)
	if diags.HasError() {
		return
	}
	var v mapView
	if _, err := r.c.do(ctx, http.MethodPut, "/admin/v1/trust-maps/"+url.PathEscape(m.ID.ValueString()), json.RawMessage(doc), header, &v); err != nil {
		diags.AddError("Cannot write trust map "+m.ID.ValueString(), err.Error())
		return
	}
	m.Version = types.Int64Value(v.Version)
}

func (r *trustMapResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m trustMapModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.put(ctx, &m, map[string]string{"If-None-Match": "*"}, &resp.Diagnostics)
	if !resp.Diagnostics.HasError() {
		resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
	}
}

func (r *trustMapResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m trustMapModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var v mapView
	_, err := r.c.do(ctx, http.MethodGet, "/admin/v1/trust-maps/"+url.PathEscape(m.ID.ValueString()), nil, nil, &v)
	switch {
	case isStatus(err, http.StatusNotFound):
		resp.State.RemoveResource(ctx) // deleted outside Terraform: the plan recreates it
		return
	case err != nil:
		resp.Diagnostics.AddError("Cannot read trust map "+m.ID.ValueString(), err.Error())
		return
	}
	if err := m.fromDocument(v.Map, v.Version); err != nil {
		resp.Diagnostics.AddError("Cannot read trust map "+m.ID.ValueString(), err.Error())
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *trustMapResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var m, prior trustMapModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.put(ctx, &m, map[string]string{"If-Match": strconv.Quote(strconv.FormatInt(prior.Version.ValueInt64(), 10))}, &resp.Diagnostics)
	if !resp.Diagnostics.HasError() {
		resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
	}
}

func (r *trustMapResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m trustMapModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	_, err := r.c.do(ctx, http.MethodDelete, "/admin/v1/trust-maps/"+url.PathEscape(m.ID.ValueString()), nil,
		map[string]string{"If-Match": strconv.Quote(strconv.FormatInt(m.Version.ValueInt64(), 10))}, nil)
	if err != nil && !isStatus(err, http.StatusNotFound) {
		resp.Diagnostics.AddError("Cannot delete trust map "+m.ID.ValueString(), err.Error())
	}
}

func (r *trustMapResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}

// anyPlaces stands for the broker's geolocation database at plan time.
type anyPlaces struct{}

func (anyPlaces) Place(netip.Addr) trustmaps.Place { return trustmaps.Place{} }
