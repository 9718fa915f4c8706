package issuer

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestMarshalClaims: the claims written without reflection are what
// encoding/json writes.
func TestMarshalClaims(t *testing.T) {
	for _, c := range []accessClaims{
		{Issuer: "https://sts.example", Subject: "k8s/system:serviceaccount:a:b", Audience: "https://mcp.example/mcp", ClientID: "agent",
			Scope: "files:read files:write", IssuedAt: 1, NotBefore: 1, Expiry: 901, ID: "abc"},
		{Issuer: "https://sts.example", Subject: "x<&>\"é", Audience: "a", ClientID: "c", IssuedAt: 1, NotBefore: 2, Expiry: 3, ID: "j", SingleUse: true},
		{Issuer: "i", Subject: "s", Audience: "a", ClientID: "c", ID: "j", Actor: &Actor{Subject: "actor"}},
		everyPlainField(t),
	} {
		got, err := c.marshal()
		want, _ := json.Marshal(c)
		if err != nil || string(got) != string(want) {
			t.Errorf("%s\nwant %s", got, want)
		}
	}
}

// everyPlainField returns claims with every field that is not a pointer
// set, so that a claim added to accessClaims and forgotten by marshal's
// hand-written path fails TestMarshalClaims.
func everyPlainField(t *testing.T) accessClaims {
	var c accessClaims
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if !f.CanSet() {
			continue
		}
		switch f.Kind() {
		case reflect.String:
			f.SetString("v" + v.Type().Field(i).Name)
		case reflect.Int64:
			f.SetInt(int64(i + 1))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Pointer:
		default:
			t.Fatalf("accessClaims.%s is a %s: teach marshal and this test about it", v.Type().Field(i).Name, f.Kind())
		}
	}
	return c
}
