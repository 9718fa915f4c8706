package terraform

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// documents is a kind of versioned document of the admin API
// (/admin/v1/{kind}/{id}): providers, clients.
type documents struct {
	c    *adminClient
	kind string
}

func (d documents) path(id string) string { return "/admin/v1/" + d.kind + "/" + url.PathEscape(id) }

// put creates (version 0) or replaces version and returns the new version.
func (d documents) put(ctx context.Context, id string, doc []byte, version int64) (int64, error) {
	header := map[string]string{"If-None-Match": "*"}
	if version > 0 {
		header = map[string]string{"If-Match": strconv.Quote(strconv.FormatInt(version, 10))}
	}
	var v mapView
	_, err := d.c.do(ctx, http.MethodPut, d.path(id), json.RawMessage(doc), header, &v)
	return v.Version, err
}

// get returns the document and its version; found is false when it is gone.
func (d documents) get(ctx context.Context, id string) (doc json.RawMessage, version int64, found bool, err error) {
	var v mapView
	_, err = d.c.do(ctx, http.MethodGet, d.path(id), nil, nil, &v)
	if isStatus(err, http.StatusNotFound) {
		return nil, 0, false, nil
	}
	return v.Map, v.Version, err == nil, err
}

func (d documents) delete(ctx context.Context, id string, version int64) error {
	_, err := d.c.do(ctx, http.MethodDelete, d.path(id), nil,
		map[string]string{"If-Match": strconv.Quote(strconv.FormatInt(version, 10))}, nil)
	if isStatus(err, http.StatusNotFound) {
		return nil
	}
	return err
}

// docString, docList, docBool convert between attribute values and the
// members of a JSON document: a null attribute is an absent member.
func docString(v types.String) any {
	if v.IsNull() || v.IsUnknown() {
		return nil
	}
	return v.ValueString()
}

func docBool(v types.Bool) any {
	if v.IsNull() || v.IsUnknown() {
		return nil
	}
	return v.ValueBool()
}

func docList(ctx context.Context, l types.List, diags *diag.Diagnostics) any {
	if l.IsNull() || l.IsUnknown() {
		return nil
	}
	out := []string{}
	diags.Append(l.ElementsAs(ctx, &out, false)...)
	return out
}

// compact drops absent members.
func compact(m map[string]any) map[string]any {
	for k, v := range m {
		if v == nil {
			delete(m, k)
		}
	}
	return m
}

func strValue(p *string) types.String {
	if p == nil {
		return types.StringNull()
	}
	return types.StringValue(*p)
}

func boolValue(p *bool) types.Bool {
	if p == nil {
		return types.BoolNull()
	}
	return types.BoolValue(*p)
}

func listValue(ss []string) types.List {
	if ss == nil {
		return types.ListNull(types.StringType)
	}
	vals := make([]attr.Value, len(ss))
	for i, s := range ss {
		vals[i] = types.StringValue(s)
	}
	return types.ListValueMust(types.StringType, vals)
}

// docModel is a resource model kept as one document of a documents kind.
type docModel interface {
	key() string
	ver() int64
	setVer(v int64)
	document(ctx context.Context) ([]byte, diag.Diagnostics)
	fromDocument(raw []byte, version int64) error
}

// The CRUD of a document resource, for any model M whose pointer is a
// docModel: create (If-None-Match), read (gone: removed from state, so the
// plan recreates it; changed: the drift shows), update (If-Match the
// state's version), delete.

func docCreate[M any, P interface {
	*M
	docModel
}](ctx context.Context, d documents, what string, plan tfsdk.Plan, state *tfsdk.State, diags *diag.Diagnostics) {
	var m M
	if diags.Append(plan.Get(ctx, &m)...); diags.HasError() {
		return
	}
	if docWrite(ctx, d, what, P(&m), 0, diags); !diags.HasError() {
		diags.Append(state.Set(ctx, &m)...)
	}
}

func docUpdate[M any, P interface {
	*M
	docModel
}](ctx context.Context, d documents, what string, plan tfsdk.Plan, prior tfsdk.State, state *tfsdk.State, diags *diag.Diagnostics) {
	var m, old M
	diags.Append(plan.Get(ctx, &m)...)
	if diags.Append(prior.Get(ctx, &old)...); diags.HasError() {
		return
	}
	if docWrite(ctx, d, what, P(&m), P(&old).ver(), diags); !diags.HasError() {
		diags.Append(state.Set(ctx, &m)...)
	}
}

func docWrite(ctx context.Context, d documents, what string, m docModel, version int64, diags *diag.Diagnostics) {
	doc, dd := m.document(ctx)
	if diags.Append(dd...); diags.HasError() {
		return
	}
	v, err := d.put(ctx, m.key(), doc, version)
	if err != nil {
		diags.AddError("Cannot write "+what+" "+m.key(), err.Error())
		return
	}
	m.setVer(v)
}

func docRead[M any, P interface {
	*M
	docModel
}](ctx context.Context, d documents, what string, state *tfsdk.State, diags *diag.Diagnostics) {
	var m M
	if diags.Append(state.Get(ctx, &m)...); diags.HasError() {
		return
	}
	key := P(&m).key()
	doc, version, found, err := d.get(ctx, key)
	switch {
	case err != nil:
		diags.AddError("Cannot read "+what+" "+key, err.Error())
		return
	case !found:
		state.RemoveResource(ctx)
		return
	}
	if err := P(&m).fromDocument(doc, version); err != nil {
		diags.AddError("Cannot read "+what+" "+key, err.Error())
		return
	}
	diags.Append(state.Set(ctx, &m)...)
}

func docDelete[M any, P interface {
	*M
	docModel
}](ctx context.Context, d documents, what string, state tfsdk.State, diags *diag.Diagnostics) {
	var m M
	if diags.Append(state.Get(ctx, &m)...); diags.HasError() {
		return
	}
	if err := d.delete(ctx, P(&m).key(), P(&m).ver()); err != nil {
		diags.AddError("Cannot delete "+what+" "+P(&m).key(), err.Error())
	}
}
