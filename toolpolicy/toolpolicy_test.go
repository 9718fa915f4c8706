package toolpolicy_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/internal/mdblocks"
	"github.com/mcpsts/mcpsts/toolpolicy"
)

// documented compiles the policies of docs/tool-policies.md, as written.
func documented(t *testing.T) *toolpolicy.Policies {
	t.Helper()
	blocks, err := mdblocks.Read(filepath.Join("..", "docs", "tool-policies.md"))
	if err != nil {
		t.Fatal(err)
	}
	var docs []toolpolicy.Document
	for _, b := range mdblocks.Of(blocks, "yaml") {
		docs = append(docs, toolpolicy.Document{Name: b.String(), Data: []byte(b.Text)})
	}
	if len(docs) != 3 {
		t.Fatalf("docs/tool-policies.md has %d policies, want the three worked ones", len(docs))
	}
	p, err := toolpolicy.Compile(docs...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The callers of the delegation matrix: a person's own token; an agent
// acting for the person (the token's subject is the person, the agent in
// act); an agent acting for an agent; an agent on its own.
var (
	person         = toolpolicy.Caller{Subject: "user:corp/alice", ClientID: "desktop", Scopes: []string{"payments:refund"}}
	agentForPerson = toolpolicy.Caller{Subject: "user:corp/alice", ClientID: "agent", Scopes: []string{"payments:refund"},
		Act: []toolpolicy.Actor{{Subject: "workload:k8s/system:serviceaccount:apps:agent", ClientID: "agent"}}}
	agentForAgent = toolpolicy.Caller{Subject: "workload:k8s/system:serviceaccount:apps:planner", ClientID: "executor",
		Act: []toolpolicy.Actor{{Subject: "workload:k8s/system:serviceaccount:apps:executor", ClientID: "executor"}}}
	agent    = toolpolicy.Caller{Subject: "workload:k8s/system:serviceaccount:apps:agent", ClientID: "agent", Scopes: []string{"payments:refund"}}
	approver = toolpolicy.Caller{Subject: "user:corp/bob", ClientID: "desktop", Scopes: []string{"payments:refund", "payments:approve"}}
)

// TestDocumentedPolicies: the three worked policies decide as the page
// says, for each caller of the delegation matrix.
func TestDocumentedPolicies(t *testing.T) {
	p := documented(t)
	now := time.Date(2026, 12, 8, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		server string
		tool   string
		args   map[string]any
		caller toolpolicy.Caller
		effect string
		rule   string
	}{
		{"a small refund", "https://payments.example.com/mcp", "refund", map[string]any{"amount": int64(120)}, agentForPerson, "allow", "small-refunds"},
		{"a refund at the limit", "https://payments.example.com/mcp", "refund", map[string]any{"amount": int64(500)}, agent, "allow", "small-refunds"},
		{"a refund in cents past it", "https://payments.example.com/mcp", "refund", map[string]any{"amount": 500.01}, agent, "step_up", "large-refunds"},
		{"a large refund", "https://payments.example.com/mcp", "refund", map[string]any{"amount": int64(2000)}, agentForPerson, "step_up", "large-refunds"},
		{"a large refund by an approver", "https://payments.example.com/mcp", "refund", map[string]any{"amount": int64(2000)}, approver, "allow", "refunds-approved"},
		{"an amount as a string", "https://payments.example.com/mcp", "refund", map[string]any{"amount": "20"}, agent, "deny", "small-refunds"},
		{"no amount", "https://payments.example.com/mcp", "refund", map[string]any{}, agent, "deny", "small-refunds"},
		{"another tool", "https://payments.example.com/mcp", "delete_account", nil, approver, "deny", ""},
		{"a read", "https://files.example.com/mcp", "read_file", map[string]any{"name": "secret.txt"}, agent, "allow", ""},
		{"a report written", "https://files.example.com/mcp", "write_file", map[string]any{"name": "reports/q4.md"}, agentForAgent, "allow", "write-reports"},
		{"a report path climbing out", "https://files.example.com/mcp", "write_file", map[string]any{"name": "reports/../etc/passwd"}, person, "deny", "write-elsewhere"},
		{"a write elsewhere", "https://files.example.com/mcp", "write_file", map[string]any{"name": "notes.txt"}, person, "deny", "write-elsewhere"},
		{"a deploy to staging for a person", "https://deploy.example.com/mcp", "deploy", map[string]any{"environment": "staging"}, person, "allow", "staging-for-people"},
		{"by an agent for a person", "https://deploy.example.com/mcp", "deploy", map[string]any{"environment": "staging"}, agentForPerson, "allow", "staging-for-people"},
		{"by an agent for an agent", "https://deploy.example.com/mcp", "deploy", map[string]any{"environment": "staging"}, agentForAgent, "deny", "no-deploy"},
		{"by an agent alone", "https://deploy.example.com/mcp", "deploy", map[string]any{"environment": "staging"}, agent, "deny", "no-deploy"},
		{"to production for a person", "https://deploy.example.com/mcp", "deploy", map[string]any{"environment": "production"}, person, "deny", "no-deploy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := p.For(tc.server).Decide(context.Background(), toolpolicy.Call{Tool: tc.tool, Args: tc.args, Caller: tc.caller, Time: now})
			if d.Effect != tc.effect || d.Rule != tc.rule {
				t.Fatalf("%+v, want %s by %q", d, tc.effect, tc.rule)
			}
			if d.Effect == "deny" && d.Reason == "" {
				t.Error("a denial without a reason")
			}
			if d.Effect == "step_up" && strings.Join(d.Scopes, " ") != "payments:approve" {
				t.Errorf("step up to %v", d.Scopes)
			}
		})
	}
	if p.For("https://other.example.com/mcp") != nil || p.For("https://other.example.com/mcp").ForResource() != nil {
		t.Error("a server without a policy has one")
	}
}

// TestCompileProblems: every problem of every document at once, with its
// document, line and field.
func TestCompileProblems(t *testing.T) {
	_, err := toolpolicy.Compile(toolpolicy.Document{Name: "bad.yaml", Data: []byte(`server: http://files.example.com/mcp
rules:
  - id: Bad ID
    tools: []
    effect: permit
    when: ['args.amount >']
  - id: up
    tools: [refund, "no spaces"]
    effect: step_up
  - id: up
    tools: [refund]
    effect: allow
    scopes: [x]
    colour: blue
---
server: https://a.example/mcp
tools_without_rules: allow
---
server: https://a.example/mcp
tools_without_rules: deny
`)})
	if err == nil {
		t.Fatal("compiled")
	}
	for _, want := range []string{
		`bad.yaml:1: server: "http://files.example.com/mcp" is not an https URI`,
		`bad.yaml:1: tools_without_rules: required: allow or deny`,
		`bad.yaml:3: rules[0].id: "Bad ID"`,
		`bad.yaml:4: rules[0].tools: required`,
		`bad.yaml:5: rules[0].effect: "permit" is not allow, deny or step_up`,
		`bad.yaml:6: rules[0].when[0]:`,
		`rules[1].tools[1]: "no spaces" is not a tool name`,
		`rules[1].scopes: required for step_up`,
		`rules[2].id: "up" is also rules[1]`,
		`rules[2].scopes: only for effect step_up`,
		`bad.yaml:14: rules[2].colour: unknown field`,
		`server: https://a.example/mcp has a policy already`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("no %q in:\n%v", want, err)
		}
	}
}

// TestDefaults: a tool with rules of which none holds is denied; a tool
// no rule names gets tools_without_rules; "*" names every tool.
func TestDefaults(t *testing.T) {
	p, err := toolpolicy.Compile(toolpolicy.Document{Name: "p.yaml", Data: []byte(`server: https://a.example/mcp
tools_without_rules: allow
rules:
  - id: small
    tools: [refund]
    when: ['args.amount < 10']
    effect: allow
---
server: https://b.example/mcp
tools_without_rules: allow
rules:
  - id: people-only
    tools: ["*"]
    when: ['caller.subject.startsWith("user:")']
    effect: allow
`)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		server, tool string
		args         map[string]any
		caller       toolpolicy.Caller
		effect       string
	}{
		{"https://a.example/mcp", "refund", map[string]any{"amount": int64(5)}, agent, "allow"},
		{"https://a.example/mcp", "refund", map[string]any{"amount": int64(50)}, agent, "deny"},
		{"https://a.example/mcp", "ping", nil, agent, "allow"},
		{"https://b.example/mcp", "anything", nil, person, "allow"},
		{"https://b.example/mcp", "anything", nil, agent, "deny"},
	} {
		if d := p.For(tc.server).Decide(ctx, toolpolicy.Call{Tool: tc.tool, Args: tc.args, Caller: tc.caller}); d.Effect != tc.effect || d.Reason == "" && d.Effect == "deny" {
			t.Errorf("%s %s %v: %+v, want %s", tc.server, tc.tool, tc.args, d, tc.effect)
		}
	}
}

// TestVisible: tools/list shows the tools some call could be allowed for
// the caller (now or after a step up), hides those its rules can only
// deny, and shows those whose outcome depends on the arguments.
func TestVisible(t *testing.T) {
	p := documented(t)
	ctx := context.Background()
	for _, tc := range []struct {
		server, tool string
		caller       toolpolicy.Caller
		visible      bool
	}{
		{"https://payments.example.com/mcp", "refund", agent, true},          // small refunds: depends on the amount
		{"https://payments.example.com/mcp", "refund", approver, true},       // always
		{"https://payments.example.com/mcp", "delete_account", agent, false}, // tools without rules: deny
		{"https://files.example.com/mcp", "read_file", agent, true},          // tools without rules: allow
		{"https://files.example.com/mcp", "write_file", agent, true},         // depends on the name
		{"https://deploy.example.com/mcp", "deploy", person, true},           // depends on the environment
		{"https://deploy.example.com/mcp", "deploy", agentForPerson, true},
		{"https://deploy.example.com/mcp", "deploy", agent, false}, // no-deploy whatever the arguments
		{"https://deploy.example.com/mcp", "deploy", agentForAgent, false},
	} {
		if got := p.For(tc.server).Visible(ctx, tc.tool, tc.caller, time.Now(), ""); got != tc.visible {
			t.Errorf("%s %s for %s: visible %v, want %v", tc.server, tc.tool, tc.caller.Subject, got, tc.visible)
		}
	}
}
