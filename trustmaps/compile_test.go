package trustmaps_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// TestCompileErrors: every problem of every document at once, with the
// document, line, map id and field path.
func TestCompileErrors(t *testing.T) {
	a := `id: good
match: {provider: p, subject: s}
grant: {client_id: c, audiences: ["https://a.example/mcp"]}
---
id: Bad ID
match: {provider: p, subject: s}
grant: {client_id: c, audiences: ["https://a.example/mcp"]}
---
id: both
match:
  provider: p
  subject: s
  subject_pattern: "s.*"
grant: {client_id: c, audiences: ["https://a.example/mcp"]}
---
id: neither
match: {provider: p}
grant: {client_id: c, audiences: ["https://a.example/mcp"]}
---
id: bad-pattern
match: {provider: p, subject_pattern: "a(b"}
grant: {client_id: c, audiences: ["https://a.example/mcp"]}
---
id: bad-cel
match:
  provider: p
  subject: s
  conditions:
    - identity.attributes.team == "x" &&
    - 1 + "x"
    - '"not a bool"'
    - undefined_var == 1
grant: {client_id: c, audiences: ["https://a.example/mcp"]}
`
	b := `id: grants
priority: -1
match: {provider: "", subject: s, extra: 1}
grant:
  client_id: c
  client_id_expr: '"c"'
  audiences: ["http://a.example/mcp", "https://a.example/mcp#frag", "mcp", "https://b.example", "https://b.example"]
  scopes: ["ok", "with space", "ok"]
  default_scopes: ["other"]
  max_ttl: 2h
  claims: {iss: x, aud: y, team: z}
  require_binding: tls
  may_act: [{subject: x}]
---
id: good
match: {provider: p, subject: s}
grant: {client_id: c, audiences: ["https://a.example/mcp"]}
---
- not a map
`
	_, err := trustmaps.Compile(trustmaps.Document{Name: "a.yaml", Data: []byte(a)}, trustmaps.Document{Name: "b.yaml", Data: []byte(b)})
	if err == nil {
		t.Fatal("compiled")
	}
	want := []string{
		`trustmaps: a.yaml:5: id: "Bad ID" is not an id`,
		`trustmaps: a.yaml:11: map "both": match: want exactly one of subject and subject_pattern`,
		`trustmaps: a.yaml:17: map "neither": match: want exactly one of subject and subject_pattern`,
		`trustmaps: a.yaml:21: map "bad-pattern": match.subject_pattern: does not compile: error parsing regexp: missing closing )`,
		`trustmaps: a.yaml:29: map "bad-cel": match.conditions[0]: 1:35: Syntax error: mismatched input '<EOF>'`,
		`trustmaps: a.yaml:30: map "bad-cel": match.conditions[1]: 1:3: found no matching overload for '_+_' applied to '(int, string)'`,
		`trustmaps: a.yaml:31: map "bad-cel": match.conditions[2]: gives string, want bool`,
		`trustmaps: a.yaml:32: map "bad-cel": match.conditions[3]: 1:1: undeclared reference to 'undefined_var'`,
		`trustmaps: b.yaml:3: map "grants": match.extra: unknown field (known: conditions, provider, subject, subject_pattern)`,
		`trustmaps: b.yaml:15: map "good": id: "good" is also the id of a map in a.yaml`,
		`trustmaps: b.yaml:19: the document must be a mapping of keys to values, got a list`,
	}
	// A map with an unknown key is checked for what it means in the same
	// run: its semantic problems (those of the second run below) come too.
	want = append(want, grantsProblems...)
	got := strings.Split(err.Error(), "\n")
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, w) }) {
			t.Errorf("missing problem %q", w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(got), len(want), err)
	}

	// Values, once the map decodes.
	b2 := strings.Replace(b, ", extra: 1", "", 1)
	_, err = trustmaps.Compile(trustmaps.Document{Name: "b.yaml", Data: []byte(b2)}, trustmaps.Document{Name: "c.yaml", Data: []byte("id: good\nmatch: {provider: p, subject: s}\ngrant: {client_id: c, audiences: [\"https://a.example/mcp\"]}\n")})
	want = append(slices.Clone(grantsProblems), `trustmaps: c.yaml:1: map "good": id: "good" is also the id of a map in b.yaml`)
	got = strings.Split(err.Error(), "\n")
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, w) }) {
			t.Errorf("missing problem %q", w)
		}
	}
	if len(got) != len(want)+1 { // + the list document
		t.Errorf("%d problems, want %d:\n%s", len(got), len(want)+1, err)
	}
	var p *trustmaps.Problem
	if !errors.As(err, &p) {
		t.Fatal("problems are not *Problem")
	}
}

// grantsProblems are the semantic problems of map "grants" in
// TestCompileErrors.
var grantsProblems = []string{
	`trustmaps: b.yaml:2: map "grants": priority: -1 is negative`,
	`trustmaps: b.yaml:3: map "grants": match.provider: required`,
	`trustmaps: b.yaml:5: map "grants": grant: want exactly one of client_id and client_id_expr`,
	`trustmaps: b.yaml:7: map "grants": grant.audiences[0]: "http://a.example/mcp" is not an absolute https URI`,
	`trustmaps: b.yaml:7: map "grants": grant.audiences[1]: "https://a.example/mcp#frag" has a fragment`,
	`trustmaps: b.yaml:7: map "grants": grant.audiences[2]: "mcp" is not an absolute https URI`,
	`trustmaps: b.yaml:7: map "grants": grant.audiences[4]: "https://b.example" repeated`,
	`trustmaps: b.yaml:8: map "grants": grant.scopes[1]: "with space" is not a scope token`,
	`trustmaps: b.yaml:8: map "grants": grant.scopes[2]: "ok" repeated`,
	`trustmaps: b.yaml:9: map "grants": grant.default_scopes[0]: "other" is not among the grant's scopes`,
	`trustmaps: b.yaml:10: map "grants": grant.max_ttl: 2h0m0s is out of range`,
	`trustmaps: b.yaml:11: map "grants": grant.claims.aud: reserved: the issuer sets it`,
	`trustmaps: b.yaml:11: map "grants": grant.claims.iss: reserved: the issuer sets it`,
	`trustmaps: b.yaml:12: map "grants": grant.require_binding: "tls" is not one of none, mtls, dpop`,
	`trustmaps: b.yaml:13: map "grants": grant.may_act[0].provider: required`,
}

func TestCompileJSON(t *testing.T) {
	e, err := trustmaps.Compile(trustmaps.Document{Name: "m.json", Data: []byte(`{"id":"j","match":{"provider":"p","subject":"s"},"grant":{"client_id":"c","audiences":["https://a.example"],"max_ttl":"5m"}}`)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Decide(context.Background(), attest.Identity{Provider: "p", Subject: "s"}, trustmaps.Request{Audience: "https://a.example"})
	if err != nil || d.TTL != 5*time.Minute {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
}

// TestNeverWidens is a property test: over random identities and requests,
// every decision names a map, and grants only an audience and scopes that
// this map lists.
func TestNeverWidens(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var docs []string
	providers := []string{"p0", "p1", "p2"}
	subjects := []string{"s0", "s1", "s2", "s3"}
	auds := []string{"https://a.example/mcp", "https://b.example/mcp", "https://c.example/mcp"}
	scopes := []string{"r", "w", "x", "y"}
	pick := func(from []string) []string {
		var out []string
		for _, s := range from {
			if rng.IntN(2) == 0 {
				out = append(out, s)
			}
		}
		return out
	}
	for i := range 60 {
		sc := pick(scopes)
		def := pick(sc)
		au := pick(auds)
		if len(au) == 0 {
			au = auds[:1]
		}
		subj := fmt.Sprintf("subject: %s", subjects[rng.IntN(len(subjects))])
		if rng.IntN(3) == 0 {
			subj = `subject_pattern: "s[0-9]"`
		}
		cond := ""
		if rng.IntN(2) == 0 {
			cond = fmt.Sprintf(`, conditions: ['identity.attributes.?n.orValue(0) %% 2 == %d']`, rng.IntN(2))
		}
		docs = append(docs, fmt.Sprintf("id: m%d\npriority: %d\nmatch: {provider: %s, %s%s}\ngrant: {client_id: c%d, audiences: %s, scopes: %s, default_scopes: %s}\n",
			i, rng.IntN(5), providers[rng.IntN(len(providers))], subj, cond, i, list(au), list(sc), list(def)))
	}
	e, err := trustmaps.Compile(trustmaps.Document{Name: "random.yaml", Data: []byte(strings.Join(docs, "---\n"))})
	if err != nil {
		t.Fatal(err)
	}
	maps := map[string]trustmaps.Map{}
	for _, m := range e.Maps() {
		maps[m.ID] = m
	}
	granted := 0
	for range 5000 {
		id := attest.Identity{Provider: providers[rng.IntN(len(providers))], Subject: subjects[rng.IntN(len(subjects))],
			Attributes: map[string]any{"n": rng.IntN(4)}}
		r := trustmaps.Request{Audience: auds[rng.IntN(len(auds))], Scopes: pick(append(scopes, "admin"))}
		d, err := e.Decide(context.Background(), id, r)
		if err != nil {
			continue
		}
		granted++
		m, ok := maps[d.MapID]
		if !ok {
			t.Fatalf("decision names unknown map %q", d.MapID)
		}
		if !slices.Contains(m.Grant.Audiences, d.Audience) || d.Audience != r.Audience {
			t.Fatalf("map %s granted audience %q (requested %q, map lists %v)", m.ID, d.Audience, r.Audience, m.Grant.Audiences)
		}
		for _, s := range d.Scopes {
			if !slices.Contains(m.Grant.Scopes, s) {
				t.Fatalf("map %s granted scope %q, not in %v", m.ID, s, m.Grant.Scopes)
			}
		}
		if len(r.Scopes) > 0 && !slices.Equal(d.Scopes, r.Scopes) {
			t.Fatalf("requested %v, granted %v: scopes were narrowed or widened", r.Scopes, d.Scopes)
		}
		if m.Match.Provider != id.Provider {
			t.Fatalf("map %s of provider %s decided for %s", m.ID, m.Match.Provider, id.Provider)
		}
	}
	if granted < 100 {
		t.Fatalf("only %d of 5000 random requests granted: the property was barely exercised", granted)
	}
}

func list(items []string) string {
	b, _ := json.Marshal(items)
	if items == nil {
		return "[]"
	}
	return string(b)
}

func FuzzCompile(f *testing.F) {
	f.Add([]byte(policy))
	f.Add([]byte("id: a\nmatch: {provider: p, subject_pattern: '(a+)+$'}\ngrant: {client_id: c, audiences: ['https://a.example']}\n"))
	f.Add([]byte("id: a\nmatch: {provider: p, subject: s, conditions: ['1 ==']}\ngrant: {client_id_expr: 'x', audiences: []}\n"))
	f.Add([]byte(`{"id":"j","match":{"provider":"p","subject":"s"},"grant":{"client_id":"c","audiences":["https://a.example"]}}`))
	f.Add([]byte("- [1, {a: *b}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := trustmaps.Compile(trustmaps.Document{Name: "fuzz.yaml", Data: data})
		if err != nil {
			var p *trustmaps.Problem
			if !errors.As(err, &p) {
				t.Fatalf("error is not a *Problem: %v", err)
			}
			return
		}
		for _, m := range e.Maps() {
			e.Explain(context.Background(), attest.Identity{Provider: m.Match.Provider, Subject: m.Match.Subject},
				trustmaps.Request{Audience: m.Grant.Audiences[0], Time: time.Unix(0, 0)})
		}
	})
}

// TestReservedClaimsAnyCase (finding 1 of the security review): a case
// variant of a reserved claim is reserved too, as encoding/json would read
// "Aud" as aud; extra claims follow a name pattern; names nested in a
// claim's value must not fold together.
func TestReservedClaimsAnyCase(t *testing.T) {
	doc := `id: smuggler
match: {provider: p, subject: s}
grant:
  client_id: c
  audiences: ["https://payments.example.com/mcp"]
  scopes: ["payments:read"]
  claims:
    Aud: https://sts.example.com/admin
    Scope: mcpsts:admin
    EXP: 4102444800
    "ſcope": x
    Team: billing
    team: {name: a, NAME: b}
    tenant: ok
`
	_, err := trustmaps.Compile(trustmaps.Document{Name: "m.yaml", Data: []byte(doc)})
	if err == nil {
		t.Fatal("compiled")
	}
	want := []string{
		`trustmaps: m.yaml:8: map "smuggler": grant.claims.Aud: reserved: the issuer sets it`,
		`trustmaps: m.yaml:8: map "smuggler": grant.claims.EXP: reserved: the issuer sets it`,
		`trustmaps: m.yaml:8: map "smuggler": grant.claims.Scope: reserved: the issuer sets it`,
		`trustmaps: m.yaml:8: map "smuggler": grant.claims.Team: an extra claim's name is lower-case`,
		`trustmaps: m.yaml:8: map "smuggler": grant.claims.ſcope: reserved: the issuer sets it`,
		`trustmaps: m.yaml:8: map "smuggler": grant.claims.team: claimname: ambiguous member names: "NAME" and "name"`,
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(got), len(want), err)
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, w) }) {
			t.Errorf("missing problem %q in\n%s", w, err)
		}
	}
}

type docs []trustmaps.Document

func (d docs) Documents(context.Context) ([]trustmaps.Document, error) { return d, nil }

// TestUnknownProviders: a map naming a provider the configuration does not
// define compiles and never matches; UnknownProviders names it (file,
// line, map, field, the provider probably meant), and a Policy logs it at
// each version put in force.
func TestUnknownProviders(t *testing.T) {
	doc := trustmaps.Document{Name: "people.yaml", Data: []byte(`id: typo
match:
  provider: dve
  subject: demo-agent
grant:
  client_id: demo
  audiences: ["https://files.example.com/mcp"]
  may_act:
    - provider: k8s
      subject: svc
    - provider: nowhere-near
      subject: svc
---
id: fine
match: {provider: dev, subject: demo-agent}
grant: {client_id: demo, audiences: ["https://files.example.com/mcp"]}
`)}
	eng, err := trustmaps.Compile(doc)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range eng.UnknownProviders([]string{"dev", "k8s", "aws"}) {
		got = append(got, p.Error())
	}
	want := []string{
		`trustmaps: people.yaml:3: map "typo": match.provider: provider "dve" is not configured, so the map never matches (did you mean "dev"?)`,
		`trustmaps: people.yaml:11: map "typo": grant.may_act[1].provider: provider "nowhere-near" is not configured, so the map never matches (configured: dev, k8s, aws)`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("UnknownProviders:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if p := eng.UnknownProviders([]string{"dve", "dev", "k8s", "nowhere-near"}); p != nil {
		t.Fatalf("every provider known: %v", p)
	}

	var logs bytes.Buffer
	known := func(context.Context) ([]string, error) { return []string{"dev", "k8s"}, nil }
	if _, err := trustmaps.NewPolicyWith(context.Background(), docs{doc}, trustmaps.Options{Providers: known}, slog.New(slog.NewTextHandler(&logs, nil)), nil); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), `level=WARN msg="trust map never matches"`); n != 2 || !strings.Contains(logs.String(), `provider \"dve\" is not configured`) {
		t.Fatalf("the policy logged:\n%s", logs.String())
	}
}

func TestDurationWords(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{15 * time.Minute, "15 minutes"},
		{time.Hour, "1 hour"},
		{90 * time.Minute, "1 hour 30 minutes"},
		{24 * time.Hour, "1 day"},
		{90 * time.Second, "1 minute 30 seconds"},
		{1500 * time.Millisecond, "1 second"},
		{time.Millisecond, "0 seconds"},
	} {
		if got := trustmaps.DurationWords(tc.d); got != tc.want {
			t.Errorf("DurationWords(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
