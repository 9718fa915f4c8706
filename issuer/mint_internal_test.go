package issuer

import (
	"encoding/json"
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
	} {
		got, err := c.marshal()
		want, _ := json.Marshal(c)
		if err != nil || string(got) != string(want) {
			t.Errorf("%s\nwant %s", got, want)
		}
	}
}
