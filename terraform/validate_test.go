package terraform

import (
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/path"
)

func TestProblemPath(t *testing.T) {
	tests := []struct {
		problem string
		want    *path.Path
		msg     string
	}{
		{`trustmaps: terraform:1: map "a": match.conditions[1]: 1:14: Syntax error: mismatched input`,
			ptr(path.Root("match").AtName("conditions").AtListIndex(1)), "match.conditions[1]: 1:14: Syntax error: mismatched input"},
		{`trustmaps: terraform:1: map "a": grant.may_act[0].subject_pattern: "(" is not a valid RE2 expression`,
			ptr(path.Root("grant").AtName("may_act").AtListIndex(0).AtName("subject_pattern")), `grant.may_act[0].subject_pattern: "(" is not a valid RE2 expression`},
		{`trustmaps: terraform:1: map "a": id: required`, ptr(path.Root("id")), "id: required"},
		{`trustmaps: terraform: not a map`, nil, "terraform: not a map"},
	}
	for _, tc := range tests {
		got, msg := problemPath(tc.problem)
		if (got == nil) != (tc.want == nil) || (got != nil && !got.Equal(*tc.want)) || msg != tc.msg {
			t.Errorf("%s: %v %q", tc.problem, got, msg)
		}
	}
}

func ptr(p path.Path) *path.Path { return &p }
