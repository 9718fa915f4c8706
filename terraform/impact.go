package terraform

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// impactDataSource is mcpsts_impact: the blast radius of proposed trust
// maps, replayed by the server against the decisions of its audit log
// (POST /admin/v1/impact), so that a plan can show, and a check block can
// refuse, what a change of mcpsts_trust_map resources would do.
type impactDataSource struct{ c *adminClient }

func newImpactDataSource() datasource.DataSource { return &impactDataSource{} }

type impactModel struct {
	Maps          types.Map    `tfsdk:"maps"`
	Removed       types.List   `tfsdk:"removed"`
	Since         types.String `tfsdk:"since"`
	Changes       types.Bool   `tfsdk:"changes"`
	Lose          types.List   `tfsdk:"lose_identities"`
	Gain          types.List   `tfsdk:"gain_identities"`
	Changed       types.List   `tfsdk:"changed_identities"`
	LoseCount     types.Int64  `tfsdk:"lose_count"`
	GainCount     types.Int64  `tfsdk:"gain_count"`
	ChangeCount   types.Int64  `tfsdk:"change_count"`
	Unchanged     types.Int64  `tfsdk:"unchanged"`
	NotReplayable types.Int64  `tfsdk:"not_replayable"`
	Partial       types.Bool   `tfsdk:"partial"`
	Report        types.String `tfsdk:"report"`
}

func (d *impactDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_impact"
}

func (d *impactDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	ids := func(desc string) schema.ListAttribute {
		return schema.ListAttribute{ElementType: types.StringType, Computed: true, Description: desc}
	}
	count := func(desc string) schema.Int64Attribute {
		return schema.Int64Attribute{Computed: true, Description: desc}
	}
	resp.Schema = schema.Schema{
		Description: "Replays the decisions of the server's audit log against the trust maps as proposed changes would make them: who would lose or gain access.",
		Attributes: map[string]schema.Attribute{
			"maps":               schema.MapAttribute{ElementType: types.StringType, Optional: true, Description: "Proposed trust maps by ID, each a JSON document (jsonencode of the map): added, or replacing the stored one."},
			"removed":            schema.ListAttribute{ElementType: types.StringType, Optional: true, Description: "IDs of stored trust maps the change removes."},
			"since":              schema.StringAttribute{Optional: true, Description: "The window of decisions to replay, a Go duration (default 168h; 0: all the log holds)."},
			"changes":            schema.BoolAttribute{Computed: true, Description: "Whether anyone would gain or lose access, or get another grant."},
			"lose_identities":    ids("provider/subject of each identity that would lose access."),
			"gain_identities":    ids("provider/subject of each identity that would gain access."),
			"changed_identities": ids("provider/subject of each identity whose client, scopes, lifetime, binding or map would change."),
			"lose_count":         count("Decisions that would become denials."),
			"gain_count":         count("Denials that would become grants."),
			"change_count":       count("Grants that would change."),
			"unchanged":          count("Decisions that would stay the same."),
			"not_replayable":     count("Recorded decisions without what a replay needs (older lines)."),
			"partial":            schema.BoolAttribute{Computed: true, Description: "Only the end of a long audit log was replayed."},
			"report":             schema.StringAttribute{Computed: true, Description: "The full report, JSON."},
		},
	}
}

func (d *impactDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, _ *datasource.ConfigureResponse) {
	if c, ok := req.ProviderData.(*adminClient); ok {
		d.c = c
	}
}

func (d *impactDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m impactModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	proposed := map[string]string{}
	if !m.Maps.IsNull() {
		resp.Diagnostics.Append(m.Maps.ElementsAs(ctx, &proposed, false)...)
	}
	var removed []string
	if !m.Removed.IsNull() {
		resp.Diagnostics.Append(m.Removed.ElementsAs(ctx, &removed, false)...)
	}
	changes := map[string]json.RawMessage{}
	for id, doc := range proposed {
		if !json.Valid([]byte(doc)) {
			resp.Diagnostics.AddError("Invalid proposed trust map", "maps[\""+id+"\"] is not JSON: use jsonencode")
			return
		}
		changes[id] = json.RawMessage(doc)
	}
	for _, id := range removed {
		changes[id] = json.RawMessage("null")
	}
	body := map[string]any{"maps": changes}
	if !m.Since.IsNull() {
		body["since"] = m.Since.ValueString()
	}
	var raw json.RawMessage
	if _, err := d.c.do(ctx, http.MethodPost, "/admin/v1/impact", body, nil, &raw); err != nil {
		resp.Diagnostics.AddError("Cannot replay the audit log", err.Error())
		return
	}
	type group struct {
		Provider string `json:"provider"`
		Subject  string `json:"subject"`
		Count    int64  `json:"count"`
	}
	var out struct {
		Report struct {
			Lose          []group `json:"lose"`
			Gain          []group `json:"gain"`
			Change        []group `json:"change"`
			Unchanged     int64   `json:"unchanged"`
			NotReplayable int64   `json:"not_replayable"`
		} `json:"report"`
		Partial bool `json:"partial"`
	}
	json.Unmarshal(raw, &out)
	identities := func(gs []group) (types.List, int64) {
		var ids []string
		var n int64
		seen := map[string]bool{}
		for _, g := range gs {
			n += g.Count
			if id := g.Provider + "/" + g.Subject; !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		if ids == nil {
			ids = []string{}
		}
		return stringList(ids), n
	}
	var lose, gain, changed int64
	m.Lose, lose = identities(out.Report.Lose)
	m.Gain, gain = identities(out.Report.Gain)
	m.Changed, changed = identities(out.Report.Change)
	m.LoseCount, m.GainCount, m.ChangeCount = types.Int64Value(lose), types.Int64Value(gain), types.Int64Value(changed)
	m.Changes = types.BoolValue(lose+gain+changed > 0)
	m.Unchanged, m.NotReplayable = types.Int64Value(out.Report.Unchanged), types.Int64Value(out.Report.NotReplayable)
	m.Partial, m.Report = types.BoolValue(out.Partial), types.StringValue(string(raw))
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}
