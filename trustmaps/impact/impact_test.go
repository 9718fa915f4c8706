package impact_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/impact"
)

const files, ledger = "https://files.example.com/mcp", "https://ledger.example.com/mcp"

// Monday 2026-11-23 10:00 UTC, and Saturday 2026-11-28 10:00 UTC.
var monday, saturday = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

const current = `id: billing
priority: 10
match: {provider: k8s, subject_pattern: "system:serviceaccount:billing:.*", conditions: ['identity.attributes.namespace == "billing"']}
grant: {client_id: billing, audiences: ["` + files + `", "` + ledger + `"], scopes: [files:read, ledger:read], default_scopes: [files:read]}
---
id: weekday-reports
priority: 20
match: {provider: k8s, subject: "system:serviceaccount:reports:nightly", conditions: ['request.time.within("Mon-Fri 00:00-23:59", "UTC")']}
grant: {client_id: reports, audiences: ["` + files + `"], scopes: [files:read]}
---
id: ci
priority: 30
match: {provider: github, subject_pattern: "repo:acme/.*"}
grant: {client_id: ci, audiences: ["` + files + `"], scopes: [files:read, files:write], default_scopes: [files:read]}
`

func compile(t testing.TB, text string) *trustmaps.Engine {
	t.Helper()
	e, err := trustmaps.Compile(trustmaps.Document{Name: "maps.yaml", Data: []byte(text)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type call struct {
	provider, subject string
	attrs             map[string]any
	audience          string
	scopes            []string
	at                time.Time
	times             int
}

// traffic is last week's decisions, recorded as the token endpoint would:
// each decided by the current maps at its time.
var traffic = []call{
	{"k8s", "system:serviceaccount:billing:agent", map[string]any{"namespace": "billing"}, files, nil, monday, 40},
	{"k8s", "system:serviceaccount:billing:agent", map[string]any{"namespace": "billing"}, ledger, []string{"ledger:read"}, monday, 10},
	{"k8s", "system:serviceaccount:billing:intruder", map[string]any{"namespace": "default"}, files, nil, monday, 3},
	{"k8s", "system:serviceaccount:reports:nightly", nil, files, nil, monday, 5},
	{"k8s", "system:serviceaccount:reports:nightly", nil, files, nil, saturday, 2},
	{"github", "repo:acme/api:ref:refs/heads/main", nil, files, []string{"files:write"}, monday, 7},
	{"github", "repo:other/api:ref:refs/heads/main", nil, files, nil, monday, 1},
}

func records(t testing.TB, before *trustmaps.Engine, unreplayable int) iter.Seq2[impact.Record, error] {
	return func(yield func(impact.Record, error) bool) {
		n := 0
		for range unreplayable {
			n++
			if !yield(impact.Record{Line: n, TraceID: "old"}, nil) {
				return
			}
		}
		for _, c := range traffic {
			for i := range c.times {
				n++
				rec := impact.Record{Line: n, TraceID: fmt.Sprintf("trace-%s-%d", c.subject, i), Time: c.at.Add(time.Duration(i) * time.Second), Replayable: true,
					Identity: impact.Identity{Kind: "oidc", Provider: c.provider, Subject: c.subject, Attributes: c.attrs},
					Request: impact.Request{GrantType: "urn:ietf:params:oauth:grant-type:token-exchange", Audience: c.audience, Scopes: c.scopes,
						SourceIP: "10.1.2.3"}}
				rec.Outcome = impact.OutcomeOf(before.Decide(context.Background(), rec.Identity.AsAttest(), rec.RequestAt()))
				if !yield(rec, nil) {
					return
				}
			}
		}
	}
}

// TestReplay: each proposed change and its exact report.
func TestReplay(t *testing.T) {
	before := compile(t, current)
	type line struct {
		kind, subject, audience string
		count                   int
		detail                  string // a word of the before → after
	}
	for _, tc := range []struct {
		name     string
		proposed string
		want     []line
	}{
		{"nothing changes", current, nil},
		{"a narrowed subject pattern", strings.Replace(current, `"system:serviceaccount:billing:.*"`, `"system:serviceaccount:billing:agent-.*"`, 1), []line{
			{impact.Lose, "system:serviceaccount:billing:agent", files, 40, "no_matching_map"},
			{impact.Lose, "system:serviceaccount:billing:agent", ledger, 10, "no_matching_map"},
		}},
		{"a removed audience", strings.Replace(current, `audiences: ["`+files+`", "`+ledger+`"]`, `audiences: ["`+files+`"]`, 1), []line{
			{impact.Lose, "system:serviceaccount:billing:agent", ledger, 10, "audience_not_granted"},
		}},
		{"an added condition", strings.Replace(current, `match: {provider: github, subject_pattern: "repo:acme/.*"}`,
			`match: {provider: github, subject_pattern: "repo:acme/.*", conditions: ['request.scopes.all(s, s != "files:write")']}`, 1), []line{
			{impact.Lose, "repo:acme/api:ref:refs/heads/main", files, 7, "no_matching_map"},
		}},
		{"a priority swap that changes which map decides", current + `---
id: everyone-in-k8s
priority: 5
match: {provider: k8s, subject_pattern: ".*"}
grant: {client_id: k8s-generic, audiences: ["` + files + `"], scopes: [files:read]}
`, []line{
			{impact.Change, "system:serviceaccount:billing:agent", files, 40, "client billing → k8s-generic"},
			{impact.Change, "system:serviceaccount:reports:nightly", files, 5, "map weekday-reports → everyone-in-k8s"},
			{impact.Gain, "system:serviceaccount:billing:intruder", files, 3, ""},
			{impact.Gain, "system:serviceaccount:reports:nightly", files, 2, ""},
		}},
		// The recorded source address is replayed: a network condition
		// every recorded request met changes nothing; one none met loses
		// them.
		{"a network condition the recorded requests meet", strings.Replace(current, `match: {provider: github, subject_pattern: "repo:acme/.*"}`,
			`match: {provider: github, subject_pattern: "repo:acme/.*", conditions: ['ip(request.source_ip).in_cidr("10.0.0.0/8")']}`, 1), nil},
		{"a network condition they do not meet", strings.Replace(current, `match: {provider: github, subject_pattern: "repo:acme/.*"}`,
			`match: {provider: github, subject_pattern: "repo:acme/.*", conditions: ['ip(request.source_ip).in_cidr("192.168.0.0/16")']}`, 1), []line{
			{impact.Lose, "repo:acme/api:ref:refs/heads/main", files, 7, "no_matching_map"},
		}},
		{"a binding now required", strings.Replace(current, `scopes: [files:read, files:write], default_scopes: [files:read]}`,
			`scopes: [files:read, files:write], default_scopes: [files:read], require_binding: dpop}`, 1), []line{
			{impact.Change, "repo:acme/api:ref:refs/heads/main", files, 7, "binding (none) → dpop"},
		}},
		{"a widened scope", strings.Replace(current, `default_scopes: [files:read]}
---
id: weekday-reports`, `default_scopes: [files:read, ledger:read]}
---
id: weekday-reports`, 1), []line{
			{impact.Change, "system:serviceaccount:billing:agent", files, 40, "scopes files:read → files:read ledger:read"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := impact.Replay(context.Background(), records(t, before, 4), compile(t, tc.proposed), impact.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.NotReplayable != 4 || rep.Replayed != 68 {
				t.Fatalf("replayed %d, not replayable %d", rep.Replayed, rep.NotReplayable)
			}
			var got []string
			changed := 0
			for _, g := range append(append(rep.Lose, rep.Gain...), rep.Change...) {
				desc := describeGroup(g)
				got = append(got, fmt.Sprintf("%s %s %s %d %s", g.Kind, g.Subject, g.Audience, g.Count, desc))
				changed += g.Count
				if !strings.HasPrefix(g.ExampleTrace, "trace-"+g.Subject) {
					t.Errorf("example %q for %s", g.ExampleTrace, g.Subject)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("report %v, want %v", got, tc.want)
			}
			for _, w := range tc.want {
				found := false
				for _, g := range got {
					if strings.HasPrefix(g, fmt.Sprintf("%s %s %s %d ", w.kind, w.subject, w.audience, w.count)) && strings.Contains(g, w.detail) {
						found = true
					}
				}
				if !found {
					t.Errorf("no %v in %v", w, got)
				}
			}
			if rep.Unchanged != 68-changed || rep.AccessChanges() != (len(tc.want) > 0) {
				t.Errorf("unchanged %d, changes %v", rep.Unchanged, rep.AccessChanges())
			}
			var buf bytes.Buffer
			for _, f := range []string{"text", "json", "markdown"} {
				if err := rep.Write(&buf, f); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func describeGroup(g impact.Group) string {
	return fmt.Sprintf("%s|%s|%s", g.Before.Reason, g.After.Reason, strings.Join(g.Changes, ","))
}

// TestReplayWindowAndStore: --since drops older decisions; with the store's
// maps as the before side, the recorded outcome is not used.
func TestReplayWindowAndStore(t *testing.T) {
	before := compile(t, current)
	rep, err := impact.Replay(context.Background(), records(t, before, 0), before, impact.Options{Since: saturday})
	if err != nil || rep.Replayed != 2 || rep.OutsideWindow != 66 {
		t.Fatalf("window: %+v %v", rep, err)
	}
	// Recorded under other maps (everyone allowed), replayed with the
	// current ones as before: no change.
	permissive := compile(t, `id: all
match: {provider: k8s, subject_pattern: ".*"}
grant: {client_id: all, audiences: ["`+files+`", "`+ledger+`"], scopes: [files:read, ledger:read]}
---
id: gh
match: {provider: github, subject_pattern: ".*"}
grant: {client_id: all, audiences: ["`+files+`"], scopes: [files:read, files:write]}
`)
	rep, err = impact.Replay(context.Background(), records(t, permissive, 0), before, impact.Options{Before: before})
	if err != nil || rep.AccessChanges() || rep.Unchanged != 68 {
		t.Fatalf("before from the store: %+v %v", rep, err)
	}
}

// BenchmarkReplay: 1,000,000 decisions against 10,000 maps, one core.
func BenchmarkReplay(b *testing.B) {
	var sb strings.Builder
	for i := range 10_000 {
		fmt.Fprintf(&sb, "---\nid: m%d\nmatch: {provider: k8s, subject: \"system:serviceaccount:ns%d:agent\", conditions: ['identity.attributes.namespace == \"ns%d\"']}\ngrant: {client_id: c%d, audiences: [\"%s\"], scopes: [files:read]}\n", i, i, i, i, files)
	}
	after := compile(b, sb.String())
	recs := func(yield func(impact.Record, error) bool) {
		for i := range 1_000_000 {
			ns := fmt.Sprint("ns", i%10_000)
			rec := impact.Record{Line: i, Replayable: true, Time: monday,
				Identity: impact.Identity{Provider: "k8s", Subject: "system:serviceaccount:" + ns + ":agent", Attributes: map[string]any{"namespace": ns}},
				Request:  impact.Request{GrantType: "client_credentials", Audience: files}, Outcome: impact.Outcome{Allowed: true, MapID: "m", ClientID: "c"}}
			if !yield(rec, nil) {
				return
			}
		}
	}
	for b.Loop() {
		if _, err := impact.Replay(context.Background(), recs, after, impact.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAppendJSON: the audit line's replay documents are what encoding/json
// writes.
func TestAppendJSON(t *testing.T) {
	ids := []impact.Identity{{Provider: "k8s", Subject: "a"}, {Kind: "oidc", Provider: "k8s", Issuer: "https://i", Subject: "sa:<x>&\"é",
		Attributes: map[string]any{"namespace": "apps", "n": 3.0, "list": []any{"a", true}}}}
	reqs := []impact.Request{{GrantType: "client_credentials"}, {GrantType: "urn:x", Audience: "https://a/mcp", Scopes: []string{"a", "b<"},
		ClientID: "c", AuthorizationServer: "https://as", SourceIP: "10.0.0.1", MTLS: true}}
	outs := []impact.Outcome{{Reason: "no_matching_map"}, {Allowed: true, MapID: "m", ClientID: "c", Audience: "https://a/mcp",
		Scopes: []string{"x"}, TTL: 600, Binding: "dpop", SingleUse: true}}
	check := func(v any, got []byte) {
		want, _ := json.Marshal(v)
		if string(got) != string(want) {
			t.Errorf("%s\nwant %s", got, want)
		}
	}
	for _, id := range ids {
		check(id, id.AppendJSON(nil))
	}
	for _, r := range reqs {
		check(r, r.AppendJSON(nil))
	}
	for _, o := range outs {
		check(o, o.AppendJSON(nil))
	}
}
