package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/internal/geoip/geoiptest"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/impact"
)

const cliMaps = `id: billing
match:
  provider: k8s-prod
  subject: "system:serviceaccount:billing:agent"
  conditions: ['identity.attributes.namespace == "billing"', 'request.time.within("Mon-Fri 07:00-19:00", "Europe/Berlin")']
grant:
  client_id: billing-agent
  audiences: ["https://payments.example.com/mcp"]
  scopes: [payments:read]
  default_scopes: [payments:read]
`

func TestTrustmapCheck(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(cliMaps), 0o600)
	out, _, err := run(t, testEnv(nil), "trustmap", "check", dir)
	if err != nil || out != "1 trust maps compile\n" {
		t.Fatalf("check = %q, %v", out, err)
	}
	bad := filepath.Join(dir, "b.yaml")
	os.WriteFile(bad, []byte("id: x\nmatch: {provider: p, subject: s, conditions: ['1 +']}\ngrant: {client_id: c, audiences: [http://x]}\n"), 0o600)
	_, _, err = run(t, testEnv(nil), "trustmap", "check", dir)
	for _, want := range []string{
		bad + `:2: map "x": match.conditions[0]: 1:4: Syntax error`,
		bad + `:3: map "x": grant.audiences[0]: "http://x" is not an absolute https URI`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("check of a bad file: %v\nlacks %q", err, want)
		}
	}
}

// TestTrustmapCheckAllAtOnce: unknown keys and the semantic problems of
// the same map are reported in one run, each with file:line, map id and
// field path; a value that cannot be decoded is reported once.
func TestTrustmapCheckAllAtOnce(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "m.yaml")
	os.WriteFile(bad, []byte(`id: x
match: {provider: p, subject: s, subject_pattern: "s.*", colour: red}
grant:
  client_id: c
  audiences: [http://x]
  scope: [a]
  max_ttl: forever
  conditions: ['1 +']
`), 0o600)
	_, _, err := run(t, testEnv(nil), "trustmap", "check", bad)
	if err == nil {
		t.Fatal("check passed")
	}
	want := []string{
		bad + `:2: map "x": match.colour: unknown field`,
		bad + `:2: map "x": match: want exactly one of subject and subject_pattern`,
		bad + `:5: map "x": grant.audiences[0]: "http://x" is not an absolute https URI`,
		bad + `:6: map "x": grant.scope: unknown field`,
		bad + `:7: map "x": grant.max_ttl: `,
		bad + `:8: map "x": grant.conditions: unknown field`,
	}
	got := strings.Split(strings.TrimSpace(err.Error()), "\n")
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, w) }) {
			t.Errorf("missing %q in\n%v", w, err)
		}
	}
	if n := strings.Count(err.Error(), "grant.max_ttl"); n != 1 {
		t.Errorf("grant.max_ttl reported %d times:\n%v", n, err)
	}
}

func TestTrustmapExplain(t *testing.T) {
	dir := t.TempDir()
	maps := filepath.Join(dir, "maps.yaml")
	os.WriteFile(maps, []byte(cliMaps), 0o600)
	idFile := filepath.Join(dir, "id.json")
	os.WriteFile(idFile, []byte(`{"provider":"k8s-prod","subject":"system:serviceaccount:billing:agent","attributes":{"namespace":"billing"}}`), 0o600)
	args := []string{"trustmap", "explain", maps, "--identity", idFile, "--audience", "https://payments.example.com/mcp", "--json"}

	out, _, err := run(t, testEnv(nil), append(args, "--time", "2026-11-23T10:00:00+01:00")...)
	for _, want := range []string{`"map_id": "billing"`, `"client_id": "billing-agent"`, `"scopes": [`} {
		if !strings.Contains(out, want) {
			t.Errorf("explain --json lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "MapID") || strings.Contains(out, `"Claims"`) || strings.Contains(out, "TTL") {
		t.Errorf("explain --json has Go field names:\n%s", out)
	}
	var tr trustmaps.Trace
	if jerr := json.Unmarshal([]byte(out), &tr); err != nil || jerr != nil || tr.Decision == nil || tr.Decision.ClientID != "billing-agent" {
		t.Fatalf("explain of a grant = %s, %v", out, err)
	}

	out, _, err = run(t, testEnv(nil), append(args, "--time", "2026-11-28T10:00:00+01:00", "--scope", "payments:read")...)
	tr = trustmaps.Trace{}
	json.Unmarshal([]byte(out), &tr)
	if err == nil || tr.Decision != nil || tr.Denial != "no_matching_map" || tr.Maps[0].Outcome != "condition 2 is false" ||
		fmt.Sprint(tr.Maps[0].Conditions) != `[{identity.attributes.namespace == "billing" true} {request.time.within("Mon-Fri 07:00-19:00", "Europe/Berlin") false}]` {
		t.Fatalf("explain on a Saturday = %s, %v", out, err)
	}
	// The text form, by default: the decision in words, each map's
	// conditions with their values.
	text := slices.Clone(args[:len(args)-1])
	out, _, err = run(t, testEnv(nil), append(text, "--time", "2026-11-23T10:00:00+01:00")...)
	want := "granted by map \"billing\"\n  client     billing-agent\n  audience   https://payments.example.com/mcp\n  scopes     payments:read\n  lifetime   the issuer's default\n\n" +
		"maps of provider \"k8s-prod\" for subject \"system:serviceaccount:billing:agent\":\n  billing (priority 0): decided\n" +
		"    true   identity.attributes.namespace == \"billing\"\n    true   request.time.within(\"Mon-Fri 07:00-19:00\", \"Europe/Berlin\")\n"
	if err != nil || out != want {
		t.Fatalf("explain (text) = %v\n%s\nwant\n%s", err, out, want)
	}
	out, _, err = run(t, testEnv(nil), append(text, "--time", "2026-11-28T10:00:00+01:00")...)
	if err == nil || !strings.HasPrefix(out, "denied (no_matching_map)\n") || !strings.Contains(out, "billing (priority 0): condition 2 is false\n") || !strings.Contains(out, "    false  request.time.within") {
		t.Fatalf("explain (text) on a Saturday = %v\n%s", err, out)
	}
	if _, _, err := run(t, testEnv(nil), "trustmap", "explain", maps, "--audience", "x"); err == nil || !strings.Contains(err.Error(), `"identity" not set`) {
		t.Fatalf("explain without --identity: %v", err)
	}
}

// The issuer and the trust maps each refuse reserved claims; they must
// agree on which.
func TestReservedClaimsAgree(t *testing.T) {
	for _, c := range trustmaps.ReservedClaims() {
		if !issuer.IsReservedClaim(c) {
			t.Errorf("trust maps reserve %q, the issuer does not", c)
		}
	}
	for _, c := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "act", "may_act", "cnf", "auth_time", "acr", "amr", "azp", "typ", "nonce", "sid"} {
		if !slices.Contains(trustmaps.ReservedClaims(), c) || !issuer.IsReservedClaim(c) {
			t.Errorf("%q is not reserved by both", c)
		}
	}
}

// TestTrustmapExplainUsersAndIDJAGs: explain answers for a person (a user
// identity with attributes, through a named client) and for an ID-JAG
// request naming an authorization server, granted or not.
func TestTrustmapExplainUsersAndIDJAGs(t *testing.T) {
	dir := t.TempDir()
	maps := filepath.Join(dir, "people.yaml")
	os.WriteFile(maps, []byte(`id: engineers
match: {provider: corp, subject_pattern: ".+", conditions: ['"engineering" in identity.attributes.groups']}
grant:
  client_id_expr: request.client_id
  audiences: ["https://files.example.com/mcp"]
  scopes: [files:read]
  authorization_servers: ["https://as.example.com"]
`), 0o600)
	idFile := filepath.Join(dir, "alice.json")
	os.WriteFile(idFile, []byte(`{"provider":"corp","subject":"alice","kind":"user","attributes":{"groups":["engineering"]}}`), 0o600)
	explain := func(extra ...string) (trustmaps.Trace, error) {
		args := append([]string{"trustmap", "explain", maps, "--json", "--identity", idFile, "--audience", "https://files.example.com/mcp", "--client-id", "desktop"}, extra...)
		out, _, err := run(t, testEnv(nil), args...)
		var tr trustmaps.Trace
		if jerr := json.Unmarshal([]byte(out), &tr); jerr != nil {
			t.Fatalf("%v: %q", args, out)
		}
		return tr, err
	}
	if tr, err := explain(); err != nil || tr.Decision == nil || tr.Decision.ClientID != "desktop" {
		t.Fatalf("a person through desktop: %+v %v", tr, err)
	}
	if tr, err := explain("--authorization-server", "https://as.example.com"); err != nil || tr.Decision == nil {
		t.Fatalf("an ID-JAG for a listed server: %+v %v", tr, err)
	}
	tr, err := explain("--authorization-server", "https://evil.example.com")
	if err == nil || tr.Decision != nil || len(tr.Maps) != 1 || !strings.Contains(tr.Maps[0].Outcome, `authorization server "https://evil.example.com" not granted`) {
		t.Fatalf("an ID-JAG for a server not listed: %+v %v", tr, err)
	}
}

// TestTrustmapImpact: real decisions of a running server, recorded in its
// audit log, replayed against proposed maps: the report names who loses
// and who gains, with exit status 2; the same maps change nothing (0); a
// corrupted log is an error naming the line (1).
func TestTrustmapImpact(t *testing.T) {
	idp := federationtest.NewIssuer(t)
	dir := t.TempDir()
	idpCA, auditFile := filepath.Join(dir, "idp.pem"), filepath.Join(dir, "audit.log")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	const files = "https://files.example.com/mcp"
	current := `id: agents
match: {provider: ci, subject_pattern: "agent-.*", conditions: ['identity.attributes.team in ["payments", "search"]']}
grant: {client_id: agents, audiences: ["` + files + `"], scopes: [files:read]}
`
	broker, ca := serveBroker(t, current, fmt.Sprintf(`audit: {file: %s}
providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}`, auditFile, idp.URL, idpCA))
	c := clientTrusting(t, ca)
	exchange := func(sub, team string) int {
		n := time.Now().Unix()
		tok := idp.Sign(map[string]any{"iss": idp.URL, "sub": sub, "aud": broker, "iat": n, "exp": n + 300, "team": team}, nil)
		resp, err := c.PostForm(broker+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {tok},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {files}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, r := range []struct {
		sub, team string
		n, want   int
	}{{"agent-pay", "payments", 3, 200}, {"agent-search", "search", 2, 200}, {"agent-ads", "ads", 1, 400}} {
		for range r.n {
			if got := exchange(r.sub, r.team); got != r.want {
				t.Fatalf("%s: %d", r.sub, got)
			}
		}
	}
	// Wait for the six decisions in the log.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		data, _ := os.ReadFile(auditFile)
		if strings.Count(string(data), `"replay.outcome"`) == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the audit log:\n%s", data)
		}
	}
	proposed := filepath.Join(dir, "proposed.yaml")
	os.WriteFile(proposed, []byte(strings.Replace(current, `["payments", "search"]`, `["payments", "ads"]`, 1)), 0o600)
	out, _, err := run(t, testEnv(nil), "trustmap", "impact", "--audit", auditFile, "--maps", proposed)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("impact of a change: %v\n%s", err, out)
	}
	for _, want := range []string{"6 decisions replayed: 2 lose access, 1 gain access, 0 change, 3 unchanged",
		"ci/agent-search token-exchange " + files + " []: map agents, client agents → denied (no_matching_map); 2 decisions",
		"ci/agent-ads token-exchange " + files + " []: denied (no_matching_map) → map agents, client agents; 1 decisions"} {
		if !strings.Contains(out, want) {
			t.Errorf("the report does not say %q:\n%s", want, out)
		}
	}
	out, _, err = run(t, testEnv(nil), "trustmap", "impact", "--audit", auditFile, "--maps", proposed, "--format", "json")
	var rep struct {
		Lose []struct {
			Subject string `json:"subject"`
			Count   int    `json:"count"`
			Trace   string `json:"example_trace_id"`
		} `json:"lose"`
	}
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil || len(rep.Lose) != 1 || rep.Lose[0].Subject != "agent-search" || rep.Lose[0].Count != 2 || len(rep.Lose[0].Trace) != 32 {
		t.Fatalf("JSON report: %v %v\n%s", jerr, err, out)
	}
	same := filepath.Join(dir, "same.yaml")
	os.WriteFile(same, []byte(current), 0o600)
	if out, _, err := run(t, testEnv(nil), "trustmap", "impact", "--audit", auditFile, "--maps", same, "--format", "markdown"); err != nil || !strings.Contains(out, "0 lose access, 0 gain access, 0 change, 6 unchanged") {
		t.Fatalf("impact of no change: %v\n%s", err, out)
	}
	data, _ := os.ReadFile(auditFile)
	corrupt := filepath.Join(dir, "corrupt.log")
	os.WriteFile(corrupt, append(append([]byte{}, data...), "not json\n"...), 0o600)
	if _, _, err := run(t, testEnv(nil), "trustmap", "impact", "--audit", corrupt, "--maps", same); err == nil || errors.As(err, &ee) ||
		!strings.Contains(err.Error(), fmt.Sprintf("audit log line %d: not a JSON audit record", strings.Count(string(data), "\n")+1)) {
		t.Fatalf("a corrupted log: %v", err)
	}
}

// TestTrustmapImpactFromStore: --current-from-store decides the "before"
// side with the store's maps instead of the recorded outcomes: decisions
// recorded as denials, which the store's current map allows as the
// proposal does, are then unchanged (0), and without the flag a gain (2).
func TestTrustmapImpactFromStore(t *testing.T) {
	data := filepath.Join(t.TempDir(), "d")
	s := startServe(t, devEnv, "--dev", "--data", data, "--listen", "127.0.0.1:0")
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	const doc = `{"id":"agents","match":{"provider":"ci","subject":"agent-x"},"grant":{"client_id":"agents","audiences":["https://files.example.com/mcp"]}}`
	st, err := store.Open(context.Background(), "sqlite:"+filepath.Join(data, "mcpsts.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutRecord(context.Background(), "agents", []byte(doc), 0); err != nil {
		t.Fatal(err)
	}
	st.Close()
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	var log strings.Builder
	for i := range 2 {
		line, _ := json.Marshal(map[string]any{"event": "token.deny", "time": time.Now().Add(-time.Hour), "trace_id": fmt.Sprintf("t%d", i),
			"mcpsts.replay.identity": js(impact.Identity{Kind: "oidc", Provider: "ci", Subject: "agent-x"}),
			"mcpsts.replay.request":  js(impact.Request{GrantType: "urn:ietf:params:oauth:grant-type:token-exchange", Audience: "https://files.example.com/mcp"}),
			"mcpsts.replay.outcome":  js(impact.Outcome{Reason: "no_matching_map"})})
		log.Write(append(line, '\n'))
	}
	dir := t.TempDir()
	auditFile, proposed := filepath.Join(dir, "audit.log"), filepath.Join(dir, "proposed.json")
	os.WriteFile(auditFile, []byte(log.String()), 0o600)
	os.WriteFile(proposed, []byte(doc), 0o600)
	out, _, err := run(t, devEnv, "trustmap", "impact", "--audit", auditFile, "--maps", proposed, "--current-from-store", "--data", data)
	if err != nil || !strings.Contains(out, "0 lose access, 0 gain access, 0 change, 2 unchanged") {
		t.Fatalf("with the store's maps as before: %v\n%s", err, out)
	}
	out, _, err = run(t, devEnv, "trustmap", "impact", "--audit", auditFile, "--maps", proposed)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(out, "0 lose access, 2 gain access") {
		t.Fatalf("with the recorded outcomes as before: %v\n%s", err, out)
	}
}

// TestTrustmapExplainPostureAndPlace: explain takes posture attributes
// (--context) and a geolocation database (--geoip), and its trace shows
// what the maps read of both; without --geoip a map that uses geolocation
// does not compile.
func TestTrustmapExplainPostureAndPlace(t *testing.T) {
	dir := t.TempDir()
	maps := filepath.Join(dir, "maps.yaml")
	os.WriteFile(maps, []byte(`id: eu-compliant
match:
  provider: k8s
  subject: agent
  conditions:
    - context.edr.?compliant.orValue(false) && context.edr.score >= 70
    - ip(request.source_ip).in_country(["DE", "FR"])
grant: {client_id: agent, audiences: ["https://tools.example/mcp"]}
`), 0o600)
	geo := geoiptest.Write(t, dir, map[string]geoiptest.Entry{"81.2.69.0/24": {Country: "DE", Continent: "EU", ASN: 3320}})
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"edr": {"compliant": true, "score": 82}}`), 0o600)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"edr": {"compliant": true, "score": 12}}`), 0o600)
	args := []string{"trustmap", "explain", maps, "--json", "--provider", "k8s", "--subject", "agent", "--audience", "https://tools.example/mcp", "--geoip", geo}
	for _, tc := range []struct {
		name    string
		extra   []string
		granted bool
		outcome string
	}{
		{"compliant, from Germany", []string{"--context", good, "--source-ip", "81.2.69.160"}, true, "decided"},
		{"low score", []string{"--context", bad, "--source-ip", "81.2.69.160"}, false, "condition 1 is false"},
		{"no posture", []string{"--source-ip", "81.2.69.160"}, false, "condition 1 failed: no such key: edr"},
		{"from elsewhere", []string{"--context", good, "--source-ip", "192.0.2.1"}, false, "condition 2 is false"},
	} {
		out, _, err := run(t, testEnv(nil), append(args, tc.extra...)...)
		var tr trustmaps.Trace
		json.Unmarshal([]byte(out), &tr)
		if (err == nil) != tc.granted || len(tr.Maps) != 1 || tr.Maps[0].Outcome != tc.outcome || tr.Place == nil {
			t.Fatalf("%s: %s, %v", tc.name, out, err)
		}
		if tc.name == "compliant, from Germany" && (tr.Place.Country != "DE" || tr.Place.ASN != 3320 ||
			len(tr.Posture) != 1 || strings.Join(tr.Posture[0].Read, ",") != "compliant,score") {
			t.Fatalf("%s: place %+v, posture %+v", tc.name, tr.Place, tr.Posture)
		}
	}
	_, _, err := run(t, testEnv(nil), "trustmap", "check", maps)
	if err == nil || !strings.Contains(err.Error(), "no geolocation database is configured (geoip.database)") {
		t.Fatalf("check without --geoip: %v", err)
	}
	if out, _, err := run(t, testEnv(nil), "trustmap", "check", maps, "--geoip", geo); err != nil || !strings.Contains(out, "1 trust maps compile") {
		t.Fatalf("check with --geoip: %q %v", out, err)
	}
}

// TestTrustmapCheckProviders: given the configuration (--config) or serve
// --dev's data directory (--data), a map naming a provider neither defines
// is a problem: it would compile and never match.
func TestTrustmapCheckProviders(t *testing.T) {
	data := t.TempDir()
	maps := filepath.Join(data, "trustmaps")
	os.MkdirAll(maps, 0o700)
	typo := filepath.Join(maps, "demo.yaml")
	os.WriteFile(typo, []byte("id: demo\nmatch:\n  provider: dve\n  subject: demo-agent\ngrant: {client_id: demo, audiences: [\"https://127.0.0.1:9443/mcp\"]}\n"), 0o600)
	_, _, err := run(t, testEnv(nil), "trustmap", "check", "--data", data)
	if want := typo + `:3: map "demo": match.provider: provider "dve" is not configured, so the map never matches (did you mean "dev"?)`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("check --data of a typo: %v\nwant %s", err, want)
	}
	// Without the configuration, nothing says which providers exist.
	if out, _, err := run(t, testEnv(nil), "trustmap", "check", maps); err != nil || out != "1 trust maps compile\n" {
		t.Fatalf("check without --config or --data: %q %v", out, err)
	}
	os.WriteFile(typo, []byte("id: demo\nmatch: {provider: dev-login, subject_pattern: '.+'}\ngrant: {client_id_expr: request.client_id, audiences: [\"https://127.0.0.1:9443/mcp\"]}\n"), 0o600)
	if out, _, err := run(t, testEnv(nil), "trustmap", "check", "--data", data); err != nil || out != "1 trust maps compile\n" {
		t.Fatalf("check --data of the people provider: %q %v", out, err)
	}

	cert, key, _ := productionFiles(t)
	file := writeConfig(t, fmt.Sprintf("issuer: https://sts.example.com\nlisten: 127.0.0.1:0\ndata_dir: %s\ntls: {cert_file: %s, key_file: %s}\n"+
		"providers:\n  - {name: k8s-prod, issuer: https://k8s.example.com, discovery: true}\n", t.TempDir(), cert, key))
	good := filepath.Join(t.TempDir(), "billing.yaml")
	os.WriteFile(good, []byte(cliMaps), 0o600)
	if out, _, err := run(t, testEnv(nil), "trustmap", "check", "--config", file, good); err != nil || out != "1 trust maps compile\n" {
		t.Fatalf("check --config of a map of a configured provider: %q %v", out, err)
	}
	os.WriteFile(good, []byte(strings.Replace(cliMaps, "provider: k8s-prod", "provider: k8s-staging", 1)), 0o600)
	_, _, err = run(t, testEnv(nil), "trustmap", "check", "--config", file, good)
	if want := good + `:3: map "billing": match.provider: provider "k8s-staging" is not configured, so the map never matches (configured: k8s-prod)`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("check --config of another provider: %v\nwant %s", err, want)
	}

	var ee *exitError
	if _, _, err := run(t, testEnv(nil), "trustmap", "check"); !errors.As(err, &ee) || ee.code != exitConfig || !strings.Contains(err.Error(), "name the trust map files") || !strings.Contains(err.Error(), "Usage:") {
		t.Fatalf("check of nothing: %v", err)
	}
}

// TestFlagErrors: a flag that cannot be parsed is a usage error (exit 2,
// the command's usage), with the flag probably meant.
func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"serve", "--dev", "--lisen", "127.0.0.1:0"}, []string{"unknown flag: --lisen (did you mean --listen?)", "Usage:\n  mcpsts serve"}},
		{[]string{"token", "--audiense", "x"}, []string{"unknown flag: --audiense (did you mean --audience?)", "Usage:\n  mcpsts token"}},
		{[]string{"trustmap", "check", "--colour"}, []string{"unknown flag: --colour", "Usage:\n  mcpsts trustmap check"}},
		{[]string{"serve", "--dev", "--listen"}, []string{"flag needs an argument: --listen", "Usage:"}},
		{[]string{"serve", "--config", "x.yaml", "--listen", "127.0.0.1:0"}, []string{"--data and --listen go with --dev", "Usage:"}},
	} {
		_, _, err := run(t, testEnv(nil), tc.args...)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != exitConfig {
			t.Errorf("%v: %v, want exit %d", tc.args, err, exitConfig)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: %v\nlacks %q", tc.args, err, w)
			}
		}
		if strings.Contains(tc.want[0], "colour") && strings.Contains(err.Error(), "did you mean") {
			t.Errorf("%v: a suggestion for a flag nothing is near: %v", tc.args, err)
		}
	}
}
