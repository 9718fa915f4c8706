package trustmaps_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// Monday 2026-11-23 10:00 in Berlin.
var monday = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

const policy = `
id: billing-agent-prod
description: billing agents in the prod namespace may call the payments MCP server
priority: 100
match:
  provider: k8s-prod
  subject: "system:serviceaccount:billing:agent"
  conditions:
    - identity.attributes.namespace == "billing"
    - request.time.within("Mon-Fri 07:00-19:00", "Europe/Berlin")
    - ip(request.source_ip).in_cidr("10.20.0.0/16")
grant:
  client_id: billing-agent
  audiences: ["https://payments.example.com/mcp"]
  scopes: ["payments:read", "payments:refund"]
  default_scopes: ["payments:read"]
  max_ttl: 10m
  claims: { team: billing }
  require_binding: mtls
---
id: billing-fallback
priority: 200
match:
  provider: k8s-prod
  subject_pattern: "system:serviceaccount:billing:.*"
grant:
  client_id_expr: '"billing-" + identity.attributes.service_account'
  audiences: ["https://payments.example.com/mcp", "https://ledger.example.com/mcp"]
  scopes: ["payments:read", "ledger:read"]
---
id: aaa-same-priority
priority: 200
match:
  provider: k8s-prod
  subject: "system:serviceaccount:billing:reporter"
grant:
  client_id: reporter
  audiences: ["https://ledger.example.com/mcp"]
  scopes: ["ledger:read", "ledger:export"]
  default_scopes: ["ledger:read"]
---
id: ci-deploy
match:
  provider: github
  subject_pattern: "repo:example-org/[^:]+:environment:production"
  conditions:
    - identity.attributes.repository.glob("example-org/*")
    - identity.attributes.?environment.orValue("") == "production"
    - context.?posture.orValue("") != "quarantined"
grant:
  client_id: deployer
  audiences: ["https://deploy.example.com/mcp"]
  scopes: ["deploy:write"]
  may_act:
    - {provider: k8s-prod, subject_pattern: "system:serviceaccount:gateway:.*"}
`

func engine(t testing.TB) *trustmaps.Engine {
	t.Helper()
	e, err := trustmaps.Compile(trustmaps.Document{Name: "maps.yaml", Data: []byte(policy)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func billingAgent() attest.Identity {
	return attest.Identity{Kind: "oidc", Provider: "k8s-prod", Issuer: "https://k8s.example", Subject: "system:serviceaccount:billing:agent",
		Attributes: map[string]any{"namespace": "billing", "service_account": "agent"}}
}

func officeRequest() trustmaps.Request {
	return trustmaps.Request{Audience: "https://payments.example.com/mcp", SourceIP: "10.20.3.4", Time: monday, GrantType: "urn:ietf:params:oauth:grant-type:token-exchange"}
}

func TestDecide(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		id      func() attest.Identity
		req     func() trustmaps.Request
		want    *trustmaps.Decision
		wantErr error
		reason  string
	}{
		{"all conditions hold, default scopes", billingAgent, officeRequest, &trustmaps.Decision{
			MapID: "billing-agent-prod", ClientID: "billing-agent", Audience: "https://payments.example.com/mcp",
			Scopes: []string{"payments:read"}, TTL: 10 * time.Minute, Claims: map[string]any{"team": "billing"}, Binding: "mtls",
		}, nil, ""},
		{"requested scopes within the grant", billingAgent, func() trustmaps.Request {
			r := officeRequest()
			r.Scopes = []string{"payments:refund", "payments:read"}
			return r
		}, &trustmaps.Decision{
			MapID: "billing-agent-prod", ClientID: "billing-agent", Audience: "https://payments.example.com/mcp",
			Scopes: []string{"payments:refund", "payments:read"}, TTL: 10 * time.Minute, Claims: map[string]any{"team": "billing"}, Binding: "mtls",
		}, nil, ""},
		{"outside office hours: the pattern map decides", billingAgent, func() trustmaps.Request {
			r := officeRequest()
			r.Time = monday.Add(12 * time.Hour) // 22:00 in Berlin
			r.Scopes = []string{"payments:read"}
			return r
		}, &trustmaps.Decision{
			MapID: "billing-fallback", ClientID: "billing-agent", Audience: "https://payments.example.com/mcp",
			Scopes: []string{"payments:read"},
		}, nil, ""},
		{"scope beyond every grant", billingAgent, func() trustmaps.Request {
			r := officeRequest()
			r.Scopes = []string{"payments:read", "payments:admin"}
			return r
		}, nil, trustmaps.ErrInvalidScope, "scope_not_granted"},
		{"the client named by the request (a browser flow)", billingAgent, func() trustmaps.Request {
			r := officeRequest()
			r.ClientID = "billing-agent"
			return r
		}, &trustmaps.Decision{
			MapID: "billing-agent-prod", ClientID: "billing-agent", Audience: "https://payments.example.com/mcp",
			Scopes: []string{"payments:read"}, TTL: 10 * time.Minute, Claims: map[string]any{"team": "billing"}, Binding: "mtls",
		}, nil, ""},
		{"another client than the maps grant", billingAgent, func() trustmaps.Request {
			r := officeRequest()
			r.ClientID = "mcp-desktop"
			return r
		}, nil, trustmaps.ErrDenied, "no_matching_map"},
		{"audience not granted", billingAgent, func() trustmaps.Request {
			r := officeRequest()
			r.Audience = "https://hr.example.com/mcp"
			return r
		}, nil, trustmaps.ErrInvalidTarget, "audience_not_granted"},
		{"audience differs by a trailing slash", billingAgent, func() trustmaps.Request {
			r := officeRequest()
			r.Audience = "https://payments.example.com/mcp/"
			return r
		}, nil, trustmaps.ErrInvalidTarget, "audience_not_granted"},
		{"no audience: the map's only one", billingAgent, func() trustmaps.Request { r := officeRequest(); r.Audience = ""; return r }, &trustmaps.Decision{
			MapID: "billing-agent-prod", ClientID: "billing-agent", Audience: "https://payments.example.com/mcp",
			Scopes: []string{"payments:read"}, TTL: 10 * time.Minute, Claims: map[string]any{"team": "billing"}, Binding: "mtls",
		}, nil, ""},
		{"no audience and several granted", func() attest.Identity {
			id := billingAgent()
			id.Subject = "system:serviceaccount:billing:other"
			return id
		}, func() trustmaps.Request { r := officeRequest(); r.Audience = ""; return r }, nil, trustmaps.ErrInvalidTarget, "audience_not_granted"},
		{"audience in another spelling of its canonical form", billingAgent, func() trustmaps.Request {
			r := officeRequest()
			r.Audience = "HTTPS://Payments.Example.COM:443/mcp"
			return r
		}, &trustmaps.Decision{
			MapID: "billing-agent-prod", ClientID: "billing-agent", Audience: "https://payments.example.com/mcp",
			Scopes: []string{"payments:read"}, TTL: 10 * time.Minute, Claims: map[string]any{"team": "billing"}, Binding: "mtls",
		}, nil, ""},
		{"audience not a URI", billingAgent, func() trustmaps.Request { r := officeRequest(); r.Audience = "payments"; return r }, nil, trustmaps.ErrInvalidTarget, "invalid_audience"},
		{"unknown provider", func() attest.Identity { id := billingAgent(); id.Provider = "k8s-dev"; return id }, officeRequest, nil, trustmaps.ErrDenied, "no_matching_map"},
		{"subject matches no map", func() attest.Identity { id := billingAgent(); id.Subject = "system:serviceaccount:hr:agent"; return id }, officeRequest, nil, trustmaps.ErrDenied, "no_matching_map"},
		// Patterns are anchored: a subject that holds a match of
		// "system:serviceaccount:billing:.*" after a prefix of its own
		// matches no map (unanchored, the fallback map would take it).
		{"a pattern's match inside a longer subject", func() attest.Identity {
			id := billingAgent()
			id.Subject = "system:serviceaccount:hr:x-system:serviceaccount:billing:batch"
			return id
		}, officeRequest, nil, trustmaps.ErrDenied, "no_matching_map"},
		{"priority tie broken by id", func() attest.Identity {
			id := billingAgent()
			id.Subject, id.Attributes["service_account"] = "system:serviceaccount:billing:reporter", "reporter"
			return id
		}, func() trustmaps.Request {
			r := officeRequest()
			r.Audience = "https://ledger.example.com/mcp"
			return r
		}, &trustmaps.Decision{
			MapID: "aaa-same-priority", ClientID: "reporter", Audience: "https://ledger.example.com/mcp", Scopes: []string{"ledger:read"},
		}, nil, ""},
		{"glob, optional attributes and posture", func() attest.Identity {
			return attest.Identity{Provider: "github", Subject: "repo:example-org/api:environment:production",
				Attributes: map[string]any{"repository": "example-org/api", "environment": "production"}}
		}, func() trustmaps.Request {
			return trustmaps.Request{Audience: "https://deploy.example.com/mcp", Time: monday}
		}, &trustmaps.Decision{MapID: "ci-deploy", ClientID: "deployer", Audience: "https://deploy.example.com/mcp", Scopes: []string{}}, nil, ""},
		{"quarantined posture", func() attest.Identity {
			return attest.Identity{Provider: "github", Subject: "repo:example-org/api:environment:production",
				Attributes: map[string]any{"repository": "example-org/api", "environment": "production"}}
		}, func() trustmaps.Request {
			return trustmaps.Request{Audience: "https://deploy.example.com/mcp", Time: monday, Context: map[string]any{"posture": "quarantined"}}
		}, nil, trustmaps.ErrDenied, "no_matching_map"},
		{"missing attribute errors and denies", func() attest.Identity {
			return attest.Identity{Provider: "github", Subject: "repo:example-org/api:environment:production", Attributes: map[string]any{}}
		}, func() trustmaps.Request {
			return trustmaps.Request{Audience: "https://deploy.example.com/mcp", Time: monday}
		}, nil, trustmaps.ErrDenied, "no_matching_map"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := e.Decide(ctx, tt.id(), tt.req())
			if tt.wantErr != nil {
				var den *trustmaps.Denial
				if !errors.Is(err, tt.wantErr) || !errors.As(err, &den) || den.Reason != tt.reason {
					t.Fatalf("Decide = %+v, %v; want %v with reason %q", d, err, tt.wantErr, tt.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want.Scopes == nil {
				tt.want.Scopes = []string{}
			}
			if d.Scopes == nil {
				d.Scopes = []string{}
			}
			if !reflect.DeepEqual(d, *tt.want) {
				t.Fatalf("Decide =\n%+v\nwant\n%+v", d, *tt.want)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	e := engine(t)
	r := officeRequest()
	r.Time = monday.Add(12 * time.Hour)
	r.SourceIP = "192.168.1.1"
	r.Scopes = []string{"payments:refund"}
	tr := e.Explain(context.Background(), billingAgent(), r)
	want := trustmaps.Trace{
		Provider: "k8s-prod", Subject: "system:serviceaccount:billing:agent", Denial: "scope_not_granted",
		Maps: []trustmaps.MapTrace{
			{ID: "billing-agent-prod", Priority: 100, Outcome: "condition 2 is false", Conditions: []trustmaps.ConditionTrace{
				{Expr: `identity.attributes.namespace == "billing"`, Value: "true"},
				{Expr: `request.time.within("Mon-Fri 07:00-19:00", "Europe/Berlin")`, Value: "false"},
				{Expr: `ip(request.source_ip).in_cidr("10.20.0.0/16")`, Value: "false"},
			}},
			{ID: "aaa-same-priority", Priority: 200, Outcome: "subject does not match"},
			{ID: "billing-fallback", Priority: 200, Outcome: `scope "payments:refund" not granted`},
		},
	}
	if !reflect.DeepEqual(tr, want) {
		t.Fatalf("Explain =\n%+v\nwant\n%+v", tr, want)
	}

	ok := e.Explain(context.Background(), billingAgent(), officeRequest())
	if ok.Decision == nil || ok.Decision.MapID != "billing-agent-prod" || ok.Denial != "" ||
		ok.Maps[0].Outcome != "decided" || ok.Maps[2].Outcome != "not reached: an earlier map decided" {
		t.Fatalf("Explain of a grant = %+v", ok)
	}

	bad := e.Explain(context.Background(), attest.Identity{Provider: "github", Subject: "repo:example-org/api:environment:production"},
		trustmaps.Request{Audience: "https://deploy.example.com/mcp"})
	if c := bad.Maps[0].Conditions[0]; !strings.HasPrefix(c.Value, "error: ") || !strings.HasPrefix(bad.Maps[0].Outcome, "condition 1 failed: ") {
		t.Fatalf("erroring condition trace = %+v", bad.Maps[0])
	}
}

func TestHelpers(t *testing.T) {
	ctx := context.Background()
	eval := func(cond string, attrs map[string]any, r trustmaps.Request) (bool, error) {
		doc := fmt.Sprintf("id: t\nmatch: {provider: p, subject: s, conditions: [%q]}\ngrant: {client_id: c, audiences: [\"https://a.example\"]}\n", cond)
		e, err := trustmaps.Compile(trustmaps.Document{Name: "t.yaml", Data: []byte(doc)})
		if err != nil {
			return false, err
		}
		r.Audience = "https://a.example"
		_, err = e.Decide(ctx, attest.Identity{Provider: "p", Subject: "s", Attributes: attrs}, r)
		return err == nil, nil
	}
	berlin := func(day, hhmm string) time.Time {
		loc, _ := time.LoadLocation("Europe/Berlin")
		t, _ := time.ParseInLocation("2006-01-02 15:04", day+" "+hhmm, loc)
		return t
	}
	tests := []struct {
		cond  string
		attrs map[string]any
		req   trustmaps.Request
		want  bool
	}{
		{`identity.subject.glob("s")`, nil, trustmaps.Request{}, true},
		{`"repo:org/a:ref".glob("repo:org/*")`, nil, trustmaps.Request{}, true},
		{`"repo:org/a".glob("repo:org/?")`, nil, trustmaps.Request{}, true},
		{`"repo:org/ab".glob("repo:org/?")`, nil, trustmaps.Request{}, false},
		{`"xrepo:org".glob("repo:*")`, nil, trustmaps.Request{}, false},
		{`"aaaaaaaaaaaaaaaaaaaaaaaaaaaaab".glob("*a*a*a*a*a*a*a*a*c")`, nil, trustmaps.Request{}, false},
		{`"abc".fullMatch("b")`, nil, trustmaps.Request{}, false},
		{`"abc".matches("b")`, nil, trustmaps.Request{}, true},
		{`"abc".fullMatch("a.c")`, nil, trustmaps.Request{}, true},
		{`ip(request.source_ip).in_cidr("10.0.0.0/8")`, nil, trustmaps.Request{SourceIP: "10.1.2.3"}, true},
		{`ip(request.source_ip).in_cidr("10.0.0.0/8")`, nil, trustmaps.Request{SourceIP: "11.1.2.3"}, false},
		{`ip(request.source_ip).in_cidr("fd00::/8")`, nil, trustmaps.Request{SourceIP: "fd00::1"}, true},
		{`cidr("10.0.0.0/8").containsIP(ip(request.source_ip))`, nil, trustmaps.Request{SourceIP: "10.9.9.9"}, true},
		{`ip(request.source_ip).in_cidr("10.0.0.0/8")`, nil, trustmaps.Request{SourceIP: "not-an-ip"}, false},
		{`request.time.within("Mon-Fri 07:00-19:00", "Europe/Berlin")`, nil, trustmaps.Request{Time: berlin("2026-11-27", "18:59")}, true},
		{`request.time.within("Mon-Fri 07:00-19:00", "Europe/Berlin")`, nil, trustmaps.Request{Time: berlin("2026-11-27", "19:00")}, false},
		{`request.time.within("Mon-Fri 07:00-19:00", "Europe/Berlin")`, nil, trustmaps.Request{Time: berlin("2026-11-28", "10:00")}, false},
		{`request.time.within("Sat,Sun 10:00-16:00", "Europe/Berlin")`, nil, trustmaps.Request{Time: berlin("2026-11-29", "15:00")}, true},
		{`request.time.within("Fri 22:00-06:00", "Europe/Berlin")`, nil, trustmaps.Request{Time: berlin("2026-11-28", "05:00")}, true},
		{`request.time.within("Fri 22:00-06:00", "Europe/Berlin")`, nil, trustmaps.Request{Time: berlin("2026-11-27", "05:00")}, false},
		{`request.time.within("daily 00:00-24:00", "UTC")`, nil, trustmaps.Request{Time: monday}, true},
		{`request.time.within("Mon-Fri 07:00", "Europe/Berlin")`, nil, trustmaps.Request{Time: monday}, false},
		{`request.time.within("Mon-Fri 07:00-19:00", "Mars/Olympus")`, nil, trustmaps.Request{Time: monday}, false},
		{`identity.attributes.?team.orValue("none") == "none"`, map[string]any{}, trustmaps.Request{}, true},
		{`has(identity.attributes.team) && identity.attributes.team == "x"`, map[string]any{"team": "x"}, trustmaps.Request{}, true},
		{`identity.attributes.nested.deep.value == 3`, map[string]any{"nested": map[string]any{"deep": map[string]any{"value": 3}}}, trustmaps.Request{}, true},
		{`request.mtls`, nil, trustmaps.Request{MTLS: true}, true},
		{`identity.attributes.items.map(x, identity.attributes.items.map(y, x + y)).size() > 0`, map[string]any{"items": make([]int, 1000)}, trustmaps.Request{}, false}, // over the cost limit: denies
		{`identity.attributes.items.map(x, x).size() > 0`, map[string]any{"items": make([]int, 10)}, trustmaps.Request{}, true},
		{`identity.attributes.count`, map[string]any{"count": 3}, trustmaps.Request{}, false},                   // not a bool: denies
		{`"payments:read" in request.scopes`, nil, trustmaps.Request{Scopes: []string{"payments:read"}}, false}, // c's grant has no scopes
		{`[1,2,3].map(x, [1,2,3,4,5,6,7,8,9,10].map(y, [1,2,3,4,5,6,7,8,9,10].map(z, x*y*z))).size() > 0`, nil, trustmaps.Request{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.cond, func(t *testing.T) {
			got, err := eval(tt.cond, tt.attrs, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("%s = %v, want %v", tt.cond, got, tt.want)
			}
		})
	}
}

func TestMayAct(t *testing.T) {
	e := engine(t)
	if !e.MayAct("ci-deploy", attest.Identity{Provider: "k8s-prod", Subject: "system:serviceaccount:gateway:proxy"}) {
		t.Fatal("gateway may not act for ci-deploy")
	}
	for _, actor := range []attest.Identity{
		{Provider: "k8s-dev", Subject: "system:serviceaccount:gateway:proxy"},
		{Provider: "k8s-prod", Subject: "system:serviceaccount:gateway-evil:proxy"},
		{Provider: "k8s-prod", Subject: "xsystem:serviceaccount:gateway:proxy"},
	} {
		if e.MayAct("ci-deploy", actor) {
			t.Errorf("%+v may act for ci-deploy", actor)
		}
	}
	if e.MayAct("billing-agent-prod", attest.Identity{Provider: "k8s-prod", Subject: "system:serviceaccount:gateway:proxy"}) {
		t.Error("a map without may_act lets an actor act")
	}
}

func TestCanonicalResource(t *testing.T) {
	tests := []struct{ in, want, wantErr string }{
		{"https://mcp.example.com", "https://mcp.example.com", ""},
		{"https://mcp.example.com/", "https://mcp.example.com", ""},
		{"HTTPS://MCP.Example.com:443/", "https://mcp.example.com", ""},
		{"https://mcp.example.com:8443/mcp", "https://mcp.example.com:8443/mcp", ""},
		{"https://mcp.example.com/mcp/", "https://mcp.example.com/mcp/", ""},
		{"https://mcp.example.com/MCP", "https://mcp.example.com/MCP", ""},
		{"https://[::1]:443/mcp", "https://[::1]/mcp", ""},
		{"https://[::1]:8443/mcp", "https://[::1]:8443/mcp", ""},
		{"https://mcp.example.com/mcp?tenant=a", "https://mcp.example.com/mcp?tenant=a", ""},
		{"http://mcp.example.com", "", "not an absolute https URI"},
		{"mcp.example.com/mcp", "", "not an absolute https URI"},
		{"https://mcp.example.com/mcp#x", "", "has a fragment"},
		{"https://user@mcp.example.com", "", "user information"},
		{"urn:example:mcp", "", "not an absolute https URI"},
	}
	for _, tt := range tests {
		got, err := trustmaps.CanonicalResource(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("CanonicalResource(%q) = %q, %v; want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("CanonicalResource(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestAuthorizationServers: an ID-JAG request (Request.AuthorizationServer)
// is decided only by a map that lists that authorization server, for the
// map's audiences and scopes; ordinary requests ignore the list; the list
// holds issuer URLs only.
func TestAuthorizationServers(t *testing.T) {
	e, err := trustmaps.Compile(trustmaps.Document{Name: "people.yaml", Data: []byte(`id: engineers
match: {provider: corp, subject_pattern: ".+", conditions: ['"engineering" in identity.attributes.groups']}
grant:
  client_id_expr: request.client_id
  audiences: ["https://files.example.com/mcp"]
  scopes: [files:read]
  authorization_servers: ["https://as.example.com", "https://sts.example.com"]
`)})
	if err != nil {
		t.Fatal(err)
	}
	alice := attest.Identity{Kind: "user", Provider: "corp", Subject: "alice", Attributes: map[string]any{"groups": []any{"engineering"}}}
	bob := attest.Identity{Kind: "user", Provider: "corp", Subject: "bob", Attributes: map[string]any{"groups": []any{"sales"}}}
	ask := func(id attest.Identity, as, audience string, scopes ...string) (trustmaps.Decision, error) {
		return e.Decide(context.Background(), id, trustmaps.Request{AuthorizationServer: as, Audience: audience, Scopes: scopes, ClientID: "desktop", Time: monday})
	}
	if d, err := ask(alice, "https://as.example.com", "https://files.example.com/mcp", "files:read"); err != nil || d.ClientID != "desktop" || d.MapID != "engineers" {
		t.Fatalf("alice, a listed server: %+v %v", d, err)
	}
	for _, tc := range []struct {
		name         string
		id           attest.Identity
		as, audience string
		scopes       []string
		kind         error
	}{
		{"a server not listed", alice, "https://evil.example.com", "https://files.example.com/mcp", nil, trustmaps.ErrInvalidTarget},
		{"a resource not granted", alice, "https://as.example.com", "https://mail.example.com/mcp", nil, trustmaps.ErrInvalidTarget},
		{"a scope not granted", alice, "https://as.example.com", "https://files.example.com/mcp", []string{"files:write"}, trustmaps.ErrInvalidScope},
		{"a user outside the group", bob, "https://as.example.com", "https://files.example.com/mcp", nil, trustmaps.ErrDenied},
	} {
		var den *trustmaps.Denial
		if _, err := ask(tc.id, tc.as, tc.audience, tc.scopes...); !errors.As(err, &den) || den.Kind != tc.kind {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.kind)
		}
	}
	if _, err := e.Decide(context.Background(), alice, trustmaps.Request{ClientID: "desktop", Time: monday}); err != nil {
		t.Errorf("an ordinary request: %v", err)
	}
	_, err = trustmaps.Compile(trustmaps.Document{Name: "bad.yaml", Data: []byte(`id: bad
match: {provider: corp, subject: alice}
grant: {client_id: c, audiences: ["https://files.example.com/mcp"], authorization_servers: ["http://as.example.com", "https://as.example.com?x=1", "https://a.example", "https://a.example"]}
`)})
	for _, want := range []string{"grant.authorization_servers[0]", "grant.authorization_servers[1]", `grant.authorization_servers[3]: "https://a.example" repeated`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("compile: %v, want %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "authorization_servers[2]") {
		t.Errorf("a good issuer URL refused: %v", err)
	}
}

func TestReferencedAttributes(t *testing.T) {
	e, err := trustmaps.Compile(trustmaps.Document{Name: "m.yaml", Data: []byte(`id: a
match: {provider: k8s, subject_pattern: ".+", conditions: ['identity.attributes.namespace == "billing"', 'identity.attributes.?team.orValue("") != "x"', 'has(identity.attributes.pod_name)']}
grant: {client_id_expr: 'identity.attributes["service_account"]', audiences: ["https://a.example.com/mcp"]}
---
id: b
match: {provider: k8s, subject: x}
grant: {client_id: b, audiences: ["https://a.example.com/mcp"]}
`)})
	if err != nil {
		t.Fatal(err)
	}
	names, all := e.ReferencedAttributes()
	if fmt.Sprint(names) != "[namespace pod_name service_account team]" || all {
		t.Fatalf("referenced %v, all %v", names, all)
	}
	e, err = trustmaps.Compile(trustmaps.Document{Name: "m.yaml", Data: []byte(`id: a
match: {provider: k8s, subject: x, conditions: ['"admin" in identity.attributes']}
grant: {client_id: a, audiences: ["https://a.example.com/mcp"]}
`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, all := e.ReferencedAttributes(); !all {
		t.Fatal("a condition reading the attributes as a whole")
	}
}
