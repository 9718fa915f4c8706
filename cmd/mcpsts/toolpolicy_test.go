package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpsts/mcpsts/internal/mdblocks"
)

// TestToolPolicyCommand: toolpolicy check compiles the documented
// policies and names every problem of a bad file (exit 2); explain decides
// a call as the edges do, with each rule read, exit 0 when allowed and 4
// when denied or to step up.
func TestToolPolicyCommand(t *testing.T) {
	dir := t.TempDir()
	blocks, err := mdblocks.Read(filepath.Join("..", "..", "docs", "tool-policies.md"))
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range mdblocks.Of(blocks, "yaml") {
		os.WriteFile(filepath.Join(dir, "p"+string(rune('a'+i))+".yaml"), []byte(b.Text), 0o600)
	}
	out, _, err := run(t, testEnv(nil), "toolpolicy", "check", dir)
	if err != nil || !strings.Contains(out, "tool policies for 3 servers compile") {
		t.Fatalf("check: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("server: https://x.example/mcp\ntools_without_rules: maybe\nrules:\n  - {id: r, tools: [t], effect: allow, when: ['args.n >']}\n"), 0o600)
	var ee *exitError
	if _, _, err := run(t, testEnv(nil), "toolpolicy", "check", bad); !errors.As(err, &ee) || ee.code != exitConfig ||
		!strings.Contains(err.Error(), "bad.yaml:2: tools_without_rules") || !strings.Contains(err.Error(), "bad.yaml:4: rules[0].when[0]") {
		t.Fatalf("a bad file: %v", err)
	}
	caller := filepath.Join(t.TempDir(), "agent.json")
	os.WriteFile(caller, []byte(`{"subject": "user:corp/alice", "client_id": "agent", "scopes": ["payments:refund"],
		"act": [{"sub": "workload:k8s/system:serviceaccount:apps:agent"}]}`), 0o600)
	explain := func(extra ...string) (string, error) {
		out, _, err := run(t, testEnv(nil), append([]string{"toolpolicy", "explain", dir, "--server", "https://payments.example.com/mcp",
			"--tool", "refund", "--caller", caller}, extra...)...)
		return out, err
	}
	out, err = explain("--args", `{"amount": 120}`)
	if err != nil || !strings.Contains(out, "refund for user:corp/alice: allow (rule small-refunds)") ||
		!strings.Contains(out, "rule refunds-approved: condition 1 is false") || !strings.Contains(out, "rule small-refunds: matched") {
		t.Fatalf("a small refund: %v\n%s", err, out)
	}
	out, err = explain("--args", `{"amount": 2000}`, "--json")
	var d struct {
		Effect, Rule string
		Scopes       []string
		Trace        []struct{ Rule, Outcome string }
	}
	json.Unmarshal([]byte(out), &d)
	if !errors.As(err, &ee) || ee.code != exitDenied || d.Effect != "step_up" || d.Rule != "large-refunds" || len(d.Trace) != 3 ||
		strings.Join(d.Scopes, " ") != "payments:approve" {
		t.Fatalf("a large refund: %v\n%s", err, out)
	}
	if _, err := explain("--args", `[1]`); !errors.As(err, &ee) || ee.code != exitConfig {
		t.Fatalf("arguments not an object: %v", err)
	}
}
