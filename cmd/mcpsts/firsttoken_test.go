package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/mcpsts/mcpsts/resource"
)

// TestFirstTokenWalkthrough follows README's first section as written, in a
// fresh data directory: serve --dev, mcpsts token --dev prints a token whose
// claims are the ones README shows, the example MCP server's middleware
// accepts it, trustmap explain names the sample map, and the audit log holds
// the decision and verifies.
func TestFirstTokenWalkthrough(t *testing.T) {
	data := filepath.Join(t.TempDir(), ".mcpsts")
	s := startServe(t, devEnv, "--dev", "--data", data, "--listen", "127.0.0.1:0")
	if _, err := os.Stat(filepath.Join(data, "trustmaps", "dev-demo.yaml")); err != nil {
		t.Fatalf("no sample trust map: %v", err)
	}

	out, stderr, err := run(t, devEnv, "token", "--dev", "--data", data, "--audience", "https://127.0.0.1:9443/mcp", "--scope", "files:read")
	if err != nil || strings.Count(out, ".") != 2 {
		t.Fatalf("token --dev = %q (stderr %q), %v", out, stderr, err)
	}
	token := strings.TrimSpace(out)
	parts := strings.Split(token, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	header, _ := base64.RawURLEncoding.DecodeString(parts[0])
	// README, "Your first token": these are the claims it shows.
	if claims["iss"] != s.issuer || claims["sub"] != "workload:dev/demo-agent" || claims["aud"] != "https://127.0.0.1:9443/mcp" ||
		claims["client_id"] != "demo-agent" || claims["scope"] != "files:read" || claims["exp"].(float64)-claims["iat"].(float64) != 900 ||
		!strings.Contains(string(header), `"typ":"at+jwt"`) {
		t.Fatalf("claims %s, header %s", payload, header)
	}

	// The example MCP server's middleware (resource) takes it.
	rs, err := resource.New(resource.Config{Resource: "https://127.0.0.1:9443/mcp", Issuer: s.issuer, Transport: clientTrusting(t, s.caPath).Transport})
	if err != nil {
		t.Fatal(err)
	}
	reached := false
	h := rs.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }), "files:read")
	req := httptest.NewRequest(http.MethodPost, "https://127.0.0.1:9443/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if !reached {
		t.Fatalf("the MCP server refused the token: %d %s %s", rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Body)
	}

	out, _, err = run(t, devEnv, "trustmap", "explain", filepath.Join(data, "trustmaps"), "--provider", "dev", "--subject", "demo-agent", "--audience", "https://127.0.0.1:9443/mcp")
	if block := readmeBlock(t, "granted by map"); err != nil || out != block {
		t.Fatalf("explain = %v\n%s\nREADME shows\n%s", err, out, block)
	}

	// Another subject has no map.
	_, _, err = run(t, devEnv, "token", "--dev", "--data", data, "--subject", "intruder", "--audience", "https://127.0.0.1:9443/mcp")
	if err == nil || !strings.Contains(err.Error(), "(no_matching_map)") || !regexp.MustCompile(`\(trace ID [0-9a-f]{32}\)`).MatchString(err.Error()) ||
		!strings.HasSuffix(err.Error(), "\nwhy: mcpsts trustmap explain "+filepath.Join(data, "trustmaps")+" --provider dev --subject intruder --audience https://127.0.0.1:9443/mcp") {
		t.Fatalf("a subject the sample map does not name: %v", err)
	}
	// A scope the map does not grant: the reason, the trace, the command.
	_, _, err = run(t, devEnv, "token", "--dev", "--data", data, "--audience", "https://127.0.0.1:9443/mcp", "--scope", "files:admin")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitDenied || !strings.Contains(err.Error(), "invalid_scope: a requested scope is not granted (scope_not_granted) (trace ID ") ||
		!strings.HasSuffix(err.Error(), " --provider dev --subject demo-agent --audience https://127.0.0.1:9443/mcp --scope files:admin") {
		t.Fatalf("a scope not granted: %v", err)
	}

	lines := waitLines(t, filepath.Join(data, "audit.log"), 2)
	if !strings.Contains(lines[0], `"event":"token.allow"`) || !strings.Contains(lines[0], `"subject.id":"demo-agent"`) || !strings.Contains(lines[0], `"client_id":"demo-agent"`) {
		t.Fatalf("audit line %s", lines[0])
	}
	// The audit line README shows: the same names, and the same values
	// where it gives one.
	var line map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &line); err != nil {
		t.Fatal(err)
	}
	shown := readmeBlock(t, `{"event":"token.allow"`)
	var names []string
	for _, m := range regexp.MustCompile(`"([a-z_.]+)":("[^"]*")?`).FindAllStringSubmatch(shown, -1) {
		names = append(names, m[1])
		if v := m[2]; v != "" && v != `"…"` && !strings.HasSuffix(v, `…"`) && fmt.Sprintf("%q", line[m[1]]) != v {
			t.Errorf("the audit line has %s %v; README shows %s", m[1], line[m[1]], v)
		}
	}
	var have []string
	for k := range line {
		have = append(have, k)
	}
	slices.Sort(names)
	slices.Sort(have)
	if !slices.Equal(names, have) {
		t.Errorf("the audit line's names:\n%v\nREADME shows:\n%v", have, names)
	}
	if out, _, err := run(t, devEnv, "audit", "verify", filepath.Join(data, "audit.log")); err != nil || !strings.Contains(out, "intact") {
		t.Fatalf("audit verify = %q, %v", out, err)
	}
}

// readmeBlock is the fenced block of README.md that starts with prefix,
// with its final newline.
func readmeBlock(t *testing.T, prefix string) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(readme), "\n"+prefix)
	if i < 0 {
		t.Fatalf("README.md has no block starting %q", prefix)
	}
	rest := string(readme)[i+1:]
	return rest[:strings.Index(rest, "```")]
}
