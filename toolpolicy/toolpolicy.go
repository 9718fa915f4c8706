// Package toolpolicy decides each MCP tool call on its tool, its
// arguments and the whole caller chain.
//
// A policy document is for one MCP server (its canonical resource URI):
//
//	server: https://files.example.com/mcp
//	tools_without_rules: deny          # allow | deny: what a tool no rule names gets
//	rules:
//	  - id: write-reports
//	    tools: [write_file]
//	    when: ['args.name.startsWith("reports/")']
//	    effect: allow                   # allow | deny | step_up
//	  - id: write-elsewhere
//	    tools: [write_file]
//	    effect: deny
//	    reason: files are written under reports/ only
//
// For a call, the rules that name its tool (or "*") are read in order and
// the first whose conditions all hold decides; when none does, the call is
// denied (a tool with rules is denied by default). A tool no rule names
// gets tools_without_rules. A condition that cannot be evaluated (a
// missing argument read without has(), a type error, the cost limit)
// denies the call, naming the rule. Conditions are CEL with the helpers of
// trust-map conditions and read:
//
//	tool     the tool's name
//	args     the call's arguments (a map; numbers are ints when whole)
//	caller   subject, client_id (strings), scopes (list), claims (map),
//	         act (list of the actors, nearest first: {sub, client_id})
//	request  time (timestamp), source_ip (string)
package toolpolicy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"github.com/mcpsts/mcpsts/internal/strictyaml"
	"github.com/mcpsts/mcpsts/resource"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// Effects of a rule.
const (
	Allow  = "allow"
	Deny   = "deny"
	StepUp = "step_up"
)

// Document is a named source of policy documents (YAML, several per file
// separated by ---).
type Document struct {
	Name string
	Data []byte
}

// document is one server's policy as written.
type document struct {
	Server            string `yaml:"server"`
	ToolsWithoutRules string `yaml:"tools_without_rules"`
	Rules             []rule `yaml:"rules"`
}

type rule struct {
	ID     string   `yaml:"id"`
	Tools  []string `yaml:"tools"`
	When   []string `yaml:"when"`
	Effect string   `yaml:"effect"`
	Reason string   `yaml:"reason"`
	Scopes []string `yaml:"scopes"` // step_up: what to ask for
}

// Problem is one problem of a policy document.
type Problem struct {
	Document string
	Line     int
	Path     string
	Msg      string
}

func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString("toolpolicy: " + p.Document)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	if p.Path != "" {
		b.WriteString(": " + p.Path)
	}
	return b.String() + ": " + p.Msg
}

// Policies are the compiled policies of every server; immutable, safe for
// concurrent use.
type Policies struct {
	servers map[string]*Server
}

// Server is one server's compiled policy.
type Server struct {
	URI               string
	toolsWithoutRules string
	rules             []*compiledRule
	named             map[string]bool            // tools some rule names
	byTool            map[string][]*compiledRule // each named tool's rules with the "*" ones, in order
}

// rulesOf are the rules that name tool (or "*"), in order.
func (s *Server) rulesOf(tool string) []*compiledRule {
	if rs, ok := s.byTool[tool]; ok {
		return rs
	}
	return s.byTool["*"]
}

type compiledRule struct {
	rule
	conds    []cel.Program
	readArgs []bool // conds[i] names args: its outcome depends on the call's arguments
}

var (
	// argsNamed finds a condition that names args anywhere in its text:
	// one that may depend on the arguments (a false positive only shows
	// a tool in tools/list that a call may then be refused).
	argsNamed   = regexp.MustCompile(`\bargs\b`)
	toolNamed   = regexp.MustCompile(`\btool\b`)
	idPattern   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)
	toolPattern = regexp.MustCompile(`^[A-Za-z0-9_.\-/]{1,128}$|^\*$`)
)

// Compile reads and checks every document; every problem is reported at
// once (errors.Join of *Problem).
func Compile(docs ...Document) (*Policies, error) {
	env, err := newEnv()
	if err != nil {
		return nil, err
	}
	p := &Policies{servers: map[string]*Server{}}
	var problems []error
	for _, d := range docs {
		nodes, err := strictyaml.Documents(d.Data)
		if err != nil {
			var sp strictyaml.Problem
			errors.As(err, &sp)
			problems = append(problems, &Problem{Document: d.Name, Line: sp.Line, Msg: sp.Msg})
			continue
		}
		for _, n := range nodes {
			var doc document
			lines, decodeProblems := strictyaml.Decode(n, "", &doc)
			fail := func(path, format string, args ...any) {
				line := strictyaml.LineOf(lines, path)
				if line == 0 { // a field not written: the document's first line
					line = n.Line
					if len(n.Content) > 0 {
						line = n.Content[0].Line
					}
				}
				problems = append(problems, &Problem{Document: d.Name, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
			}
			for _, dp := range decodeProblems {
				problems = append(problems, &Problem{Document: d.Name, Line: dp.Line, Path: dp.Path, Msg: dp.Msg})
			}
			s := &Server{URI: doc.Server, toolsWithoutRules: doc.ToolsWithoutRules, named: map[string]bool{}}
			switch {
			case doc.Server == "":
				fail("server", "required: the MCP server's resource URI")
			case !strings.HasPrefix(doc.Server, "https://") || strings.ContainsAny(doc.Server, "#?"):
				fail("server", "%q is not an https URI without query or fragment", doc.Server)
			case p.servers[doc.Server] != nil:
				fail("server", "%s has a policy already (one document per server)", doc.Server)
			}
			if doc.ToolsWithoutRules != Allow && doc.ToolsWithoutRules != Deny {
				fail("tools_without_rules", "required: allow or deny (what a tool no rule names gets); got %q", doc.ToolsWithoutRules)
			}
			ids := map[string]int{}
			for i, r := range doc.Rules {
				at := fmt.Sprintf("rules[%d]", i)
				if !idPattern.MatchString(r.ID) {
					fail(at+".id", "%q: want lowercase letters, digits, '.', '_', '-' (at most 128)", r.ID)
				} else if j, dup := ids[r.ID]; dup {
					fail(at+".id", "%q is also rules[%d]", r.ID, j)
				}
				ids[r.ID] = i
				if len(r.Tools) == 0 {
					fail(at+".tools", "required: the tools the rule is for (\"*\": every tool)")
				}
				for j, t := range r.Tools {
					if !toolPattern.MatchString(t) {
						fail(fmt.Sprintf("%s.tools[%d]", at, j), "%q is not a tool name", t)
					}
					s.named[t] = true
				}
				switch r.Effect {
				case Allow, Deny:
					if len(r.Scopes) > 0 {
						fail(at+".scopes", "only for effect step_up")
					}
				case StepUp:
					if len(r.Scopes) == 0 {
						fail(at+".scopes", "required for step_up: the scopes the caller must come back with")
					}
				default:
					fail(at+".effect", "%q is not allow, deny or step_up", r.Effect)
				}
				if len(r.Reason) > 256 || strings.ContainsAny(r.Reason, "\r\n") {
					fail(at+".reason", "at most 256 characters, one line")
				}
				cr := &compiledRule{rule: r}
				for j, expr := range r.When {
					prg, err := env.Compile(expr)
					if err != nil {
						fail(fmt.Sprintf("%s.when[%d]", at, j), "%v", err)
						continue
					}
					cr.conds = append(cr.conds, prg)
					cr.readArgs = append(cr.readArgs, argsNamed.MatchString(expr))
				}
				s.rules = append(s.rules, cr)
			}
			s.byTool = map[string][]*compiledRule{}
			for tool := range s.named {
				for _, r := range s.rules {
					if slices.Contains(r.Tools, tool) || slices.Contains(r.Tools, "*") {
						s.byTool[tool] = append(s.byTool[tool], r)
					}
				}
			}
			if doc.Server != "" && p.servers[doc.Server] == nil {
				p.servers[doc.Server] = s
			}
		}
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return p, nil
}

func newEnv() (*trustmaps.Conditions, error) {
	mapType := cel.MapType(cel.StringType, cel.DynType)
	return trustmaps.NewConditions(nil,
		cel.Variable("tool", cel.StringType),
		cel.Variable("args", mapType),
		cel.Variable("caller", mapType),
		cel.Variable("request", mapType))
}

// For is the policy of the server at uri; nil when it has none (every
// call then goes on as the scopes decide).
func (p *Policies) For(uri string) *Server {
	if p == nil {
		return nil
	}
	return p.servers[uri]
}

// Servers lists the servers that have a policy.
func (p *Policies) Servers() []string {
	var out []string
	for uri := range p.servers {
		out = append(out, uri)
	}
	slices.Sort(out)
	return out
}

// Caller is who calls: the token's subject and client, its scopes and
// claims, and the actors of its act chain, nearest first.
type Caller struct {
	Subject  string
	ClientID string
	Scopes   []string
	Claims   map[string]any
	Act      []Actor
}

// Actor is one link of a delegation chain (RFC 8693 act).
type Actor struct {
	Subject  string
	ClientID string
}

// Call is one tools/call to decide.
type Call struct {
	Tool     string
	Args     map[string]any
	Caller   Caller
	Time     time.Time
	SourceIP string
}

// Decision is what the policy says of a call.
type Decision struct {
	Effect string   // allow, deny or step_up
	Rule   string   // the rule that decided; "" for a default
	Reason string   // for the caller (deny), or why the default applied
	Scopes []string // step_up: what to ask for
	Trace  []Step   // each rule read, in order
}

// Step is one rule read for a call and what came of it.
type Step struct {
	Rule    string `json:"rule"`
	Outcome string `json:"outcome"` // "matched", "condition 2 is false", "condition 1 failed: …"
}

// Decide decides call under s.
func (s *Server) Decide(ctx context.Context, call Call) Decision {
	var d Decision
	if !s.named[call.Tool] && !s.named["*"] {
		d.Effect = s.toolsWithoutRules
		d.Reason = fmt.Sprintf("no rule names the tool %q: tools_without_rules is %s", call.Tool, s.toolsWithoutRules)
		return d
	}
	// Adapted to CEL values once for every rule read.
	vars, _ := interpreter.NewActivation(map[string]any{"tool": call.Tool, "args": types.DefaultTypeAdapter.NativeToValue(args(call.Args)),
		"caller":  types.DefaultTypeAdapter.NativeToValue(callerVar(call.Caller)),
		"request": types.DefaultTypeAdapter.NativeToValue(map[string]any{"time": call.Time, "source_ip": call.SourceIP})})
	rules := s.rulesOf(call.Tool)
	d.Trace = make([]Step, 0, len(rules))
	for _, r := range rules {
		outcome, matched, failed := r.eval(ctx, vars)
		d.Trace = append(d.Trace, Step{Rule: r.ID, Outcome: outcome})
		switch {
		case failed:
			d.Effect, d.Rule = Deny, r.ID
			d.Reason = fmt.Sprintf("rule %s could not be evaluated for this call", r.ID)
			return d
		case matched:
			d.Effect, d.Rule, d.Scopes = r.Effect, r.ID, r.Scopes
			d.Reason = r.Reason
			if d.Effect == Deny && d.Reason == "" {
				d.Reason = "denied by rule " + r.ID
			}
			return d
		}
	}
	d.Effect = Deny
	d.Reason = fmt.Sprintf("no rule allows this call of %q", call.Tool)
	return d
}

// Visible reports whether some call of tool could be allowed for caller
// (at once or after a step up), so that tools/list shows it: a tool whose
// rules can only deny this caller, whatever the arguments, is hidden; one
// whose outcome depends on the arguments is shown.
func (s *Server) Visible(ctx context.Context, tool string, caller Caller, at time.Time, sourceIP string) bool {
	return s.Lister(ctx, caller, at, sourceIP)(tool)
}

// Lister is Visible for the tools of one listing: the conditions that read
// neither the arguments nor the tool are evaluated once for all of them.
func (s *Server) Lister(ctx context.Context, caller Caller, at time.Time, sourceIP string) func(tool string) bool {
	vars := map[string]any{"tool": "", "args": map[string]any{}, "caller": callerVar(caller),
		"request": map[string]any{"time": at, "source_ip": sourceIP}}
	known := map[string]string{} // a caller-only condition's text: its outcome
	return func(tool string) bool {
		return s.visible(ctx, tool, vars, known)
	}
}

func (s *Server) visible(ctx context.Context, tool string, vars map[string]any, known map[string]string) bool {
	if !s.named[tool] && !s.named["*"] {
		return s.toolsWithoutRules == Allow
	}
	vars["tool"] = tool
	for _, r := range s.rulesOf(tool) {
		switch r.holdsWithoutArgs(ctx, vars, known) {
		case "fails": // Decide denies every call at this rule
			return false
		case "false":
			continue
		case "depends":
			if r.Effect != Deny {
				return true // some arguments may be allowed
			}
			continue // some arguments may pass this denial: read on
		}
		return r.Effect != Deny // the first rule that holds for every call
	}
	return false
}

// holdsWithoutArgs says whether r holds for every call of this caller
// ("true"), for none ("false"), depending on the arguments ("depends"), or
// cannot be evaluated whatever they are ("fails", which denies).
func (r *compiledRule) holdsWithoutArgs(ctx context.Context, vars map[string]any, known map[string]string) string {
	depends := false
	for i, prg := range r.conds {
		if r.readArgs[i] {
			depends = true
			continue
		}
		outcome, ok := known[r.When[i]]
		if !ok {
			outcome = "true"
			v, _, err := prg.ContextEval(ctx, vars)
			if b, isBool := v.Value().(bool); err != nil || !isBool {
				outcome = "fails"
			} else if !b {
				outcome = "false"
			}
			if !toolNamed.MatchString(r.When[i]) {
				known[r.When[i]] = outcome // the same for every tool of the listing
			}
		}
		if outcome != "true" {
			return outcome
		}
	}
	if depends {
		return "depends"
	}
	return "true"
}

// eval evaluates r's conditions in order; failed is an error (which
// denies).
func (r *compiledRule) eval(ctx context.Context, vars interpreter.Activation) (outcome string, matched, failed bool) {
	for i, prg := range r.conds {
		v, _, err := prg.ContextEval(ctx, vars)
		if err != nil {
			return fmt.Sprintf("condition %d failed: %v", i+1, err), false, true
		}
		b, ok := v.Value().(bool)
		if !ok {
			return fmt.Sprintf("condition %d gives %s, not a bool", i+1, v.Type()), false, true
		}
		if !b {
			return isFalse(i), false, false
		}
	}
	return "matched", true, false
}

func args(a map[string]any) map[string]any {
	if a == nil {
		return map[string]any{}
	}
	return a
}

func callerVar(c Caller) map[string]any {
	act := make([]any, len(c.Act))
	for i, a := range c.Act {
		act[i] = map[string]any{"sub": a.Subject, "client_id": a.ClientID}
	}
	claims := c.Claims
	if claims == nil {
		claims = map[string]any{}
	}
	scopes := make([]any, len(c.Scopes))
	for i, s := range c.Scopes {
		scopes[i] = s
	}
	return map[string]any{"subject": c.Subject, "client_id": c.ClientID, "scopes": scopes, "claims": claims, "act": act}
}

// ForResource is s as the resource package's ToolPolicy; nil for a
// server without a policy.
func (s *Server) ForResource() resource.ToolPolicy {
	if s == nil {
		return nil
	}
	return forResource{s}
}

type forResource struct{ s *Server }

func (f forResource) DecideToolCall(ctx context.Context, c resource.ToolCall) resource.ToolDecision {
	d := f.s.Decide(ctx, Call{Tool: c.Tool, Args: c.Args, Caller: callerOf(c), Time: c.Time, SourceIP: c.SourceIP})
	return resource.ToolDecision{Effect: d.Effect, Reason: d.Reason, Rule: d.Rule, Scopes: d.Scopes}
}

func (f forResource) ShowTools(ctx context.Context, c resource.ToolCall) func(tool string) bool {
	return f.s.Lister(ctx, callerOf(c), c.Time, c.SourceIP)
}

// callerOf is the caller of a call the resource package read.
func callerOf(c resource.ToolCall) Caller {
	caller := Caller{Subject: c.Caller.Subject, ClientID: c.Caller.ClientID, Scopes: c.Caller.Scopes, Claims: c.Claims}
	for a := c.Caller.Actor; a != nil; a = a.Actor {
		caller.Act = append(caller.Act, Actor{Subject: a.Subject, ClientID: a.ClientID})
	}
	return caller
}

// falseOutcomes are the outcomes of a condition that does not hold, made
// once: a decision reads many rules and formats none of them.
var falseOutcomes = func() []string {
	out := make([]string, 32)
	for i := range out {
		out[i] = fmt.Sprintf("condition %d is false", i+1)
	}
	return out
}()

func isFalse(i int) string {
	if i < len(falseOutcomes) {
		return falseOutcomes[i]
	}
	return fmt.Sprintf("condition %d is false", i+1)
}

// LoadFile compiles the policy file at path and returns the policy of the
// server at resourceURL as the resource package's ToolPolicy, for the edges
// that read one file (mcpsts gateway, examples/mcp-server). The file must
// hold that server's policy.
func LoadFile(path, resourceURL string) (resource.ToolPolicy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := Compile(Document{Name: path, Data: data})
	if err != nil {
		return nil, err
	}
	s := p.For(resourceURL)
	if s == nil {
		return nil, fmt.Errorf("toolpolicy: %s: no policy for %s (it has: %s)", path, resourceURL, strings.Join(p.Servers(), ", "))
	}
	return s.ForResource(), nil
}
