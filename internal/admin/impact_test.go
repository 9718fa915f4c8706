package admin_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/internal/admin"
	"github.com/mcpsts/mcpsts/trustmaps/impact"
)

// auditLine is a token decision as the token endpoint records it, with
// the replay fields.
func auditLine(t *testing.T, trace string, at time.Time, subject string, o impact.Outcome) string {
	t.Helper()
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	line, _ := json.Marshal(map[string]any{"event": "token.allow", "time": at, "trace_id": trace,
		"mcpsts.replay.identity": js(impact.Identity{Kind: "oidc", Provider: "github", Subject: subject}),
		"mcpsts.replay.request":  js(impact.Request{GrantType: "urn:ietf:params:oauth:grant-type:token-exchange", Audience: "https://deploy.example.com/mcp"}),
		"mcpsts.replay.outcome":  js(o)})
	return string(line) + "\n"
}

// TestImpact: POST /admin/v1/impact replays the server's own audit log
// against the maps as the proposed changes would make them.
func TestImpact(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "audit.log")
	e := newEnvWith(t, func(c *admin.Config) { c.AuditFile = logFile })
	ops := e.clientCert(t, "spiffe://example.org/ops/terraform", false)
	if status, _, body := e.do(t, call{method: "PUT", path: "/admin/v1/trust-maps/ops", body: storedMap, header: map[string]string{"If-None-Match": "*"}, cert: &ops}); status != 201 {
		t.Fatalf("put: %d %v", status, body)
	}
	allowed := impact.Outcome{Allowed: true, MapID: "ops", ClientID: "deployer", Audience: "https://deploy.example.com/mcp", Scopes: nil, TTL: 600}
	var log strings.Builder
	now := time.Now()
	for i := range 3 {
		log.WriteString(auditLine(t, fmt.Sprintf("trace-%d", i), now.Add(-time.Hour), "repo:ops/infra:ref:refs/heads/main", allowed))
	}
	log.WriteString(auditLine(t, "ancient", now.Add(-30*24*time.Hour), "repo:ops/infra:ref:refs/heads/main", allowed))
	os.WriteFile(logFile, []byte(log.String()), 0o600)
	impactOf := func(body string, cert bool) (int, map[string]any) {
		c := call{method: "POST", path: "/admin/v1/impact", body: body}
		if cert {
			c.cert = &ops
		}
		status, _, out := e.do(t, c)
		return status, out
	}
	status, out := impactOf(`{"maps": {"ops": null}}`, true)
	rep, _ := out["report"].(map[string]any)
	lose, _ := rep["lose"].([]any)
	if status != 200 || len(lose) != 1 || lose[0].(map[string]any)["count"] != 3.0 || rep["outside_window"] != 1.0 || out["partial"] != false {
		t.Fatalf("removing the map: %d %v", status, out)
	}
	status, out = impactOf(`{"maps": {"ops": `+strings.Replace(storedMap, `"max_ttl":"10m"`, `"max_ttl":"5m"`, 1)+`}, "since": "0"}`, true)
	rep, _ = out["report"].(map[string]any)
	if change, _ := rep["change"].([]any); status != 200 || len(change) != 1 || change[0].(map[string]any)["count"] != 4.0 {
		t.Fatalf("a shorter lifetime, all the log: %d %v", status, out)
	}
	if status, out := impactOf(`{"maps": {"ops": {"id": "ops"}}}`, true); status != 400 || out["error"] != "invalid_trust_map" {
		t.Fatalf("a map that does not compile: %d %v", status, out)
	}
	if status, out := impactOf(`{"maps": {}}`, true); status != 400 || out["error"] != "invalid_request" {
		t.Fatalf("no change: %d %v", status, out)
	}
	if status, _ := impactOf(`{"maps": {"ops": null}}`, false); status != 401 {
		t.Fatalf("without credentials: %d", status)
	}
	// A server reading only the end of a long log says so.
	e2 := newEnvWith(t, func(c *admin.Config) { c.AuditFile, c.ImpactMaxBytes = logFile, 500 })
	ops2 := e2.clientCert(t, "spiffe://example.org/ops/terraform", false)
	e2.do(t, call{method: "PUT", path: "/admin/v1/trust-maps/ops", body: storedMap, header: map[string]string{"If-None-Match": "*"}, cert: &ops2})
	status, _, out = e2.do(t, call{method: "POST", path: "/admin/v1/impact", body: `{"maps": {"ops": null}, "since": "0"}`, cert: &ops2})
	if rep, _ := out["report"].(map[string]any); status != 200 || out["partial"] != true || rep["replayed"].(float64) >= 4 {
		t.Fatalf("a long log: %d %v", status, out)
	}
}
