package oidc

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/mcpsts/mcpsts/attest"
)

// FuzzPresets feeds arbitrary claim sets to every preset's parser: an
// error is always an invalid-evidence error, never a panic.
func FuzzPresets(f *testing.F) {
	f.Add(`{"tid":"t","oid":"o","iss":"https://sts.windows.net/t/","xms_mirid":"/subscriptions/s/resourcegroups/g/providers/p/t/n"}`)
	f.Add(`{"email":"a@b","email_verified":true,"google":{"compute_engine":{"project_id":"p","zone":"z","instance_id":"1","instance_name":"n","project_number":1,"instance_creation_timestamp":2}}}`)
	f.Add(`{"kubernetes.io":{"namespace":"a","pod":{"name":1}}}`)
	f.Add(`{"ref":"refs/heads/x","ref_protected":"maybe"}`)
	f.Fuzz(func(t *testing.T, claims string) {
		for _, name := range Presets() {
			var a map[string]any
			if json.Unmarshal([]byte(claims), &a) != nil || a == nil {
				return
			}
			sub, _ := a["sub"].(string)
			if sub == "" {
				sub = "system:serviceaccount:a:b"
			}
			if err := presets[name].parse(sub, a); err != nil && !errors.Is(err, attest.ErrInvalidEvidence) {
				t.Fatalf("%s: error of no known kind: %v", name, err)
			}
		}
	})
}
