package trustmaps_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/trustmaps"
)

const billingMap = `id: billing
match:
  provider: k8s-prod
  subject: "system:serviceaccount:billing:agent"
  conditions: ['identity.attributes.namespace == "billing"']
grant:
  client_id: billing-agent
  audiences: ["https://payments.example.com/mcp"]
  scopes: [payments:read, payments:refund]
  default_scopes: [payments:read]
  max_ttl: 10m
`

// A trust map compiled and asked for a decision: the verified identity of a
// Kubernetes service account gets the map's client, audience and default
// scopes.
func ExampleCompile() {
	eng, err := trustmaps.Compile(trustmaps.Document{Name: "billing.yaml", Data: []byte(billingMap)})
	if err != nil {
		fmt.Println(err)
		return
	}
	id := attest.Identity{Kind: "oidc", Provider: "k8s-prod", Subject: "system:serviceaccount:billing:agent",
		Attributes: map[string]any{"namespace": "billing"}}
	d, err := eng.Decide(context.Background(), id, trustmaps.Request{Audience: "https://payments.example.com/mcp", Time: time.Now()})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(d.MapID, d.ClientID, d.Audience, d.Scopes, d.TTL)
	// Output: billing billing-agent https://payments.example.com/mcp [payments:read] 10m0s
}

// Compile reports every problem of every map at once, each with its
// document, line, map id and field path.
func ExampleCompile_problems() {
	broken := strings.NewReplacer(`"https://payments.example.com/mcp"`, `"http://payments.example.com/mcp"`, "max_ttl: 10m", "max_ttl: 2h").Replace(billingMap)
	_, err := trustmaps.Compile(trustmaps.Document{Name: "billing.yaml", Data: []byte(broken)})
	fmt.Println(err)
	// Output:
	// trustmaps: billing.yaml:8: map "billing": grant.audiences[0]: "http://payments.example.com/mcp" is not an absolute https URI
	// trustmaps: billing.yaml:11: map "billing": grant.max_ttl: 2h0m0s is out of range (want 1m to 60m, or none for the issuer's default)
}

// Explain says why a request is denied, map by map, without sending one.
func ExampleEngine_Explain() {
	eng, _ := trustmaps.Compile(trustmaps.Document{Name: "billing.yaml", Data: []byte(billingMap)})
	id := attest.Identity{Kind: "oidc", Provider: "k8s-prod", Subject: "system:serviceaccount:billing:agent",
		Attributes: map[string]any{"namespace": "staging"}}
	tr := eng.Explain(context.Background(), id, trustmaps.Request{Audience: "https://payments.example.com/mcp", Time: time.Now()})
	fmt.Println(tr.Denial)
	for _, m := range tr.Maps {
		fmt.Println(m.ID+":", m.Outcome)
	}
	// Output:
	// no_matching_map
	// billing: condition 1 is false
}
