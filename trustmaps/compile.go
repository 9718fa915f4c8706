package trustmaps

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"cel.dev/cel-go/cel"

	"github.com/mcpsts/mcpsts/internal/claimname"
	"github.com/mcpsts/mcpsts/internal/strictyaml"
)

// ReservedClaims lists the claims a map cannot set, in any letter case:
// those the issuer sets and those a standard gives a meaning to. The
// issuer refuses them again, by the same rule.
func ReservedClaims() []string { return claimname.Registered() }

// Problem is one thing wrong with a map.
type Problem struct {
	Document string // the document's name
	Line     int
	MapID    string // "" when the map has no usable id
	Path     string // field path within the map
	Msg      string
}

func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString("trustmaps: " + p.Document)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	if p.MapID != "" {
		fmt.Fprintf(&b, ": map %q", p.MapID)
	}
	if p.Path != "" {
		b.WriteString(": " + p.Path)
	}
	b.WriteString(": " + p.Msg)
	return b.String()
}

var (
	idPattern       = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)
	clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:/@-]{1,256}$`)
)

// compiled is a checked map, ready to evaluate.
type compiled struct {
	Map
	subject    *regexp.Regexp // nil for an exact subject
	conditions []cel.Program
	clientID   cel.Program // nil for a literal client_id
	actors     []actorRule
	audiences  map[string]bool
	scopes     map[string]bool
	reads      reads                 // what its expressions read of context and place
	doc        string                // the document it came from
	lineOf     func(path string) int // a field's line in it
}

type actorRule struct {
	provider, subject string
	pattern           *regexp.Regexp
}

// Compile checks every map of docs and builds an engine. All problems come
// back at once, joined, each a *Problem naming the document, line, map id
// and field path.
func Compile(docs ...Document) (*Engine, error) { return Options{}.Compile(docs...) }

// Compile is Compile with these options.
func (o Options) Compile(docs ...Document) (*Engine, error) {
	env, err := newCELEnv(o.Places)
	if err != nil {
		return nil, err
	}
	c := compiler{env: env, ids: map[string]string{}, programs: map[string]program{}}
	var maps []*compiled
	for _, d := range docs {
		maps = append(maps, c.document(d)...)
	}
	if err := errors.Join(c.problems...); err != nil {
		return nil, err
	}
	return newEngine(env, maps), nil
}

type compiler struct {
	env      *celEnv
	ids      map[string]string  // map id → document
	programs map[string]program // by expression: maps often share them
	problems []error
}

func (c *compiler) document(d Document) []*compiled {
	nodes, err := strictyaml.Documents(d.Data)
	if err != nil {
		var p strictyaml.Problem
		errors.As(err, &p)
		c.problems = append(c.problems, &Problem{Document: d.Name, Msg: p.Msg})
		return nil
	}
	var out []*compiled
	for _, n := range nodes {
		var m Map
		lines, problems := strictyaml.Decode(n, "", &m)
		id := m.ID
		if !idPattern.MatchString(id) {
			id = ""
		}
		fail := func(path, format string, args ...any) {
			line := strictyaml.LineOf(lines, path)
			if line == 0 {
				line = n.Line
				if len(n.Content) > 0 {
					line = n.Content[0].Line
				}
			}
			c.problems = append(c.problems, &Problem{Document: d.Name, Line: line, MapID: id, Path: path, Msg: fmt.Sprintf(format, args...)})
		}
		// Every problem at once: a map with unknown keys is still checked
		// for what it means; only what could not be decoded is not
		// checked further (its zero value would be reported again).
		var unsound []string
		for _, p := range problems {
			c.problems = append(c.problems, &Problem{Document: d.Name, Line: p.Line, MapID: id, Path: p.Path, Msg: p.Msg})
			if !p.Ignored {
				unsound = append(unsound, p.Path)
			}
		}
		checked := func(path, format string, args ...any) {
			for _, u := range unsound {
				if u == "" || path == u || strings.HasPrefix(path, u+".") || strings.HasPrefix(path, u+"[") {
					return
				}
			}
			fail(path, format, args...)
		}
		cm := c.check(m, checked)
		if len(problems) > 0 {
			continue
		}
		if cm != nil {
			if prev, dup := c.ids[m.ID]; dup {
				fail("id", "%q is also the id of a map in %s", m.ID, prev)
				continue
			}
			c.ids[m.ID] = d.Name
			cm.doc, cm.lineOf = d.Name, func(path string) int { return strictyaml.LineOf(lines, path) }
			out = append(out, cm)
		}
	}
	return out
}

// check validates one decoded map; it returns nil after reporting problems.
func (c *compiler) check(m Map, fail func(path, format string, args ...any)) *compiled {
	before := len(c.problems)
	cm := &compiled{Map: m, audiences: map[string]bool{}, scopes: map[string]bool{}}
	if !idPattern.MatchString(m.ID) {
		fail("id", "%q is not an id (lower-case letters, digits, '.', '_', '-'; at most 128)", m.ID)
	}
	if m.Priority < 0 {
		fail("priority", "%d is negative", m.Priority)
	}
	if m.Match.Provider == "" {
		fail("match.provider", "required")
	}
	switch {
	case (m.Match.Subject == "") == (m.Match.SubjectPattern == ""):
		fail("match", "want exactly one of subject and subject_pattern")
	case m.Match.SubjectPattern != "":
		re, err := regexp.Compile(`^(?:` + m.Match.SubjectPattern + `)$`)
		if err != nil {
			fail("match.subject_pattern", "does not compile: %v", err)
		}
		cm.subject = re
	}
	for i, expr := range m.Match.Conditions {
		prg, err := c.program(expr, cel.BoolType)
		if err != nil {
			fail(fmt.Sprintf("match.conditions[%d]", i), "%v", err)
		}
		cm.conditions = append(cm.conditions, prg.Program)
		cm.reads.merge(prg.reads)
	}
	g := m.Grant
	switch {
	case (g.ClientID == "") == (g.ClientIDExpr == ""):
		fail("grant", "want exactly one of client_id and client_id_expr")
	case g.ClientID != "" && !clientIDPattern.MatchString(g.ClientID):
		fail("grant.client_id", "%q is not a client id (letters, digits and ._:/@-)", g.ClientID)
	case g.ClientIDExpr != "":
		prg, err := c.program(g.ClientIDExpr, cel.StringType)
		if err != nil {
			fail("grant.client_id_expr", "%v", err)
		}
		cm.clientID = prg.Program
		cm.reads.merge(prg.reads)
	}
	if len(g.Audiences) == 0 {
		fail("grant.audiences", "at least one is required")
	}
	for i, a := range g.Audiences {
		canon, err := CanonicalResource(a)
		switch {
		case err != nil:
			fail(fmt.Sprintf("grant.audiences[%d]", i), "%v", err)
		case cm.audiences[canon]:
			fail(fmt.Sprintf("grant.audiences[%d]", i), "%q repeated", a)
		}
		cm.audiences[canon] = true
		cm.Grant.Audiences[i] = canon
	}
	for i, as := range g.AuthorizationServers {
		u, err := url.Parse(as)
		switch {
		case err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			fail(fmt.Sprintf("grant.authorization_servers[%d]", i), "%q is not an issuer URL (https, no query, fragment or user information)", as)
		case slices.Contains(g.AuthorizationServers[:i], as):
			fail(fmt.Sprintf("grant.authorization_servers[%d]", i), "%q repeated", as)
		}
	}
	for i, s := range g.Scopes {
		if !validScope(s) {
			fail(fmt.Sprintf("grant.scopes[%d]", i), "%q is not a scope token", s)
		} else if cm.scopes[s] {
			fail(fmt.Sprintf("grant.scopes[%d]", i), "%q repeated", s)
		}
		cm.scopes[s] = true
	}
	for i, s := range g.DefaultScopes {
		if !cm.scopes[s] {
			fail(fmt.Sprintf("grant.default_scopes[%d]", i), "%q is not among the grant's scopes", s)
		}
	}
	if g.MaxTTL != 0 && (g.MaxTTL < time.Minute || g.MaxTTL > time.Hour) {
		fail("grant.max_ttl", "%s is out of range (want 1m to 60m, or none for the issuer's default)", g.MaxTTL)
	}
	names := make([]string, 0, len(g.Claims))
	for name := range g.Claims {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := claimname.CheckExtra(name); err != nil {
			fail("grant.claims."+name, "%v", err)
			continue
		}
		// A value may nest objects: names in them that fold together
		// would make the token ambiguous, and the issuer refuses it.
		if b, err := json.Marshal(g.Claims[name]); err != nil {
			fail("grant.claims."+name, "cannot be encoded as JSON: %v", err)
		} else if err := claimname.CheckPayload(b); err != nil {
			fail("grant.claims."+name, "%v", err)
		}
	}
	switch g.RequireBinding {
	case "", "none", "mtls", "dpop":
	default:
		fail("grant.require_binding", "%q is not one of none, mtls, dpop", g.RequireBinding)
	}
	for i, a := range g.MayAct {
		path := fmt.Sprintf("grant.may_act[%d]", i)
		rule := actorRule{provider: a.Provider, subject: a.Subject}
		if a.Provider == "" {
			fail(path+".provider", "required")
		}
		switch {
		case (a.Subject == "") == (a.SubjectPattern == ""):
			fail(path, "want exactly one of subject and subject_pattern")
		case a.SubjectPattern != "":
			re, err := regexp.Compile(`^(?:` + a.SubjectPattern + `)$`)
			if err != nil {
				fail(path+".subject_pattern", "does not compile: %v", err)
			}
			rule.pattern = re
		}
		cm.actors = append(cm.actors, rule)
	}
	if len(c.problems) > before {
		return nil
	}
	return cm
}

// program is a planned expression and what it reads.
type program struct {
	cel.Program
	reads reads
}

func (c *compiler) program(expr string, want *cel.Type) (program, error) {
	key := want.String() + "\x00" + expr
	if prg, ok := c.programs[key]; ok {
		return prg, nil
	}
	prg, rd, err := c.env.compile(expr, want)
	if err != nil {
		return program{}, err
	}
	c.programs[key] = program{prg, rd}
	return c.programs[key], nil
}

// validScope follows RFC 6749 §3.3.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c == 0x22 || c == 0x5C || c > 0x7E {
			return false
		}
	}
	return true
}
