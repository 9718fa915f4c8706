package terraform

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
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
