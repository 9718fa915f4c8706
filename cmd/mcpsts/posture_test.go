package main

import (
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/internal/devpki"
	"github.com/mcpsts/mcpsts/internal/geoip/geoiptest"
)

// postureMaps: the agent gets the tools server only from a compliant host
// (EDR score at least 70) that the MDM service manages, and the reports
// server only from German or French addresses.
const postureMaps = `id: compliant-agent
match:
  provider: k8s
  subject: "system:serviceaccount:payments:token-client"
  conditions:
    - context.edr.?compliant.orValue(false)
    - context.edr.score >= 70
    - context.mdm.managed == true
grant: {client_id: agent, audiences: ["https://tools.example/mcp"]}
---
id: eu-agent
match:
  provider: k8s
  subject: "system:serviceaccount:payments:token-client"
  conditions:
    - ip(request.source_ip).in_country(["DE", "FR"])
grant: {client_id: agent, audiences: ["https://reports.example/mcp"]}
`

// TestPostureEndToEnd runs mcpsts serve with a pushed posture source (a
// loopback EDR issuer signing real assertions), a pulled one (a loopback
// MDM service that requires the broker's client certificate), a
// geolocation database and a trusted proxy, and gets tokens with mcpsts
// token --posture.
func TestPostureEndToEnd(t *testing.T) {
	idp, edr := federationtest.NewIssuer(t), federationtest.NewIssuer(t)
	edr.AddKey("ES256")
	dir := t.TempDir()
	idpCA, edrCA := filepath.Join(dir, "idp.pem"), filepath.Join(dir, "edr.pem")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	os.WriteFile(edrCA, edr.CAPEM(), 0o600)

	// The MDM service answers only a caller with a certificate.
	var mdmDown atomic.Bool
	var mdmCalls atomic.Int64
	mdm := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mdmCalls.Add(1)
		if len(r.TLS.PeerCertificates) == 0 || mdmDown.Load() {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		var req struct {
			Identity struct{ Attributes map[string]any }
		}
		json.NewDecoder(r.Body).Decode(&req)
		w.Write(fmt.Appendf(nil, `{"managed": %v}`, req.Identity.Attributes["node_name"] == "node-pool-a-7f3k2"))
	}))
	mdm.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	mdm.StartTLS()
	t.Cleanup(mdm.Close)
	mdmCA := filepath.Join(dir, "mdm.pem")
	os.WriteFile(mdmCA, pemCert(mdm.Certificate().Raw), 0o600)
	clientCert, clientKey, _ := productionFiles(t) // the broker's own workload certificate
	auditFile := filepath.Join(dir, "audit.log")

	geo := geoiptest.Write(t, dir, map[string]geoiptest.Entry{
		"81.2.69.0/24":    {Country: "DE", Continent: "EU", ASN: 3320},
		"216.160.83.0/24": {Country: "US", Continent: "NA", ASN: 209},
		"127.0.0.1/32":    {Country: "US", Continent: "NA"},
	})
	broker, ca := serveBroker(t, postureMaps, fmt.Sprintf(`providers:
  - {name: k8s, issuer: %s, discovery: true, ca_file: %s, preset: kubernetes}
posture:
  - name: edr
    kind: assertion
    issuer: %s
    discovery: true
    ca_file: %s
    algorithms: [ES256]
    audience: https://sts.example
    max_age: 30m
    bind: {claim: sub, identity: attributes.node_name, providers: [k8s]}
  - name: mdm
    kind: pull
    url: %s/posture
    ca_file: %s
    cert_file: %s
    key_file: %s
    timeout: 1s
    cache_ttl: 1s
geoip: {database: %s}
server: {trusted_proxies: ["127.0.0.2"]}
audit: {file: %s}`, idp.URL, idpCA, edr.URL, edrCA, mdm.URL, mdmCA, clientCert, clientKey, geo, auditFile))

	now := time.Now()
	workloadToken := filepath.Join(dir, "token")
	os.WriteFile(workloadToken, []byte(idp.Sign(map[string]any{
		"iss": idp.URL, "sub": "system:serviceaccount:payments:token-client", "aud": []string{broker},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
		"kubernetes.io": map[string]any{"namespace": "payments",
			"node":           map[string]any{"name": "node-pool-a-7f3k2", "uid": "0c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"},
			"pod":            map[string]any{"name": "token-client-6d8f9c7b5-x2k4p", "uid": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"},
			"serviceaccount": map[string]any{"name": "token-client", "uid": "9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b"}},
	}, nil)), 0o600)
	report := func(node string, compliant bool, score int, age time.Duration) string {
		iat := now.Add(-age)
		f := filepath.Join(t.TempDir(), "edr.jwt")
		os.WriteFile(f, []byte(edr.Sign(map[string]any{"iss": edr.URL, "sub": node, "aud": "https://sts.example",
			"iat": iat.Unix(), "exp": iat.Add(15 * time.Minute).Unix(), "compliant": compliant, "score": score}, nil)+"\n"), 0o600)
		return f
	}
	good := report("node-pool-a-7f3k2", true, 85, time.Minute)
	tokenArgs := func(extra ...string) []string {
		return append([]string{"token", "--broker", broker, "--ca", ca, "--audience", "https://tools.example/mcp", "--source", "file:" + workloadToken}, extra...)
	}

	for _, tc := range []struct {
		name    string
		posture []string
		granted bool
	}{
		{"compliant", []string{good}, true},
		{"compliant, from a command", []string{"cmd:cat " + good}, true},
		{"not compliant", []string{report("node-pool-a-7f3k2", false, 85, time.Minute)}, false},
		{"score too low", []string{report("node-pool-a-7f3k2", true, 40, time.Minute)}, false},
		{"expired", []string{report("node-pool-a-7f3k2", true, 85, 20*time.Minute)}, false},
		{"another host's report", []string{report("node-pool-b-9x1y7", true, 99, time.Minute)}, false},
		{"none", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			for _, p := range tc.posture {
				args = append(args, "--posture", p)
			}
			out, _, err := run(t, testEnv(nil), tokenArgs(args...)...)
			var ee *exitError
			switch {
			case tc.granted && (err != nil || strings.Count(out, ".") != 2):
				t.Fatalf("%q, %v", out, err)
			case !tc.granted && (!errors.As(err, &ee) || ee.code != exitDenied || !strings.Contains(err.Error(), "no_matching_map")):
				t.Fatalf("%v, want exit %d with no_matching_map", err, exitDenied)
			}
		})
	}
	_, _, err := run(t, testEnv(nil), tokenArgs("--posture", filepath.Join(dir, "missing.jwt"))...)
	if ee := (*exitError)(nil); !errors.As(err, &ee) || ee.code != exitEvidence || !strings.Contains(err.Error(), "posture source file:") {
		t.Fatalf("a missing posture file: %v, want exit %d naming the source", err, exitEvidence)
	}

	// The MDM service down: denied, and the audit line says why.
	mdmDown.Store(true)
	time.Sleep(1100 * time.Millisecond) // past the cache's TTL
	if _, _, err := run(t, testEnv(nil), tokenArgs("--posture", good)...); err == nil {
		t.Fatal("granted with the MDM service down")
	}
	mdmDown.Store(false)
	if mdmCalls.Load() == 0 {
		t.Fatal("the MDM service was never asked")
	}

	// Geolocation: the source address is the peer's, or, from the trusted
	// proxy (127.0.0.2) only, the one it forwards.
	tokenReq := func(local, forwarded string) int {
		t.Helper()
		c := clientTrusting(t, ca)
		c.Transport.(*http.Transport).DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}).DialContext
		tok, _ := os.ReadFile(workloadToken)
		req, _ := http.NewRequest(http.MethodPost, broker+"/token", strings.NewReader(url.Values{
			"grant_type": {exchange.GrantTokenExchange}, "subject_token": {string(tok)}, "subject_token_type": {exchange.TokenTypeJWT},
			"resource": {"https://reports.example/mcp"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if forwarded != "" {
			req.Header.Set("X-Forwarded-For", forwarded)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name, local, forwarded string
		want                   int
	}{
		{"from a US address", "127.0.0.1", "", 400},
		{"spoofed X-Forwarded-For from an untrusted peer", "127.0.0.1", "81.2.69.160", 400},
		{"German client through the trusted proxy", "127.0.0.2", "81.2.69.160", 200},
		{"US client through the trusted proxy", "127.0.0.2", "216.160.83.56", 400},
		{"client the database does not know", "127.0.0.2", "192.0.2.7", 400},
	} {
		if got := tokenReq(tc.local, tc.forwarded); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}

	// The audit log: the posture and place each decision used, never an
	// assertion.
	time.Sleep(200 * time.Millisecond) // lines are written after the answers
	raw, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	log := string(raw)
	goodJWT, _ := os.ReadFile(good)
	for _, want := range []string{
		`"posture":"edr present age=1m`,
		`"posture":"edr unavailable (not_bound: the assertion's sub is not the identity's attributes.node_name: it is about another workload); mdm present`,
		`"posture":"edr absent (no assertion sent); mdm present`,
		`"posture":"edr unavailable (token_expired: token is expired); mdm present`,
		`mdm unavailable (unreachable: federation: fetch failed: POST`,
		`"place":"country=DE continent=EU asn=3320"`,
		`"place":"country=US continent=NA asn=0"`,
		`"place":"unknown"`,
		`posture source \"mdm\" unavailable`, // the deny trace
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the audit log lacks %s", want)
		}
	}
	if strings.Contains(log, strings.TrimSpace(string(goodJWT))) || strings.Contains(log, strings.Split(string(goodJWT), ".")[2]) {
		t.Error("the audit log holds an assertion")
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestStorePostureSources: a posture source added through the admin API is
// asked from the server's next reload, by the rules of the configuration
// file's; a removed one no longer is.
func TestStorePostureSources(t *testing.T) {
	idp, edr := federationtest.NewIssuer(t), federationtest.NewIssuer(t)
	dir := t.TempDir()
	idpCA, edrCA := filepath.Join(dir, "idp.pem"), filepath.Join(dir, "edr.pem")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	os.WriteFile(edrCA, edr.CAPEM(), 0o600)
	adminPKI, err := devpki.Ensure(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	adminCert, adminKey, _ := devpki.EnsureAdmin(dir, time.Now())
	broker, ca := serveBroker(t, `id: compliant
match: {provider: ci, subject: agent, conditions: ["context.edr.compliant == true"]}
grant: {client_id: agent, audiences: ["https://tools.example/mcp"]}
`, fmt.Sprintf(`providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}
admin: {client_ca_file: %s, client_names: [%s]}`, idp.URL, idpCA, adminPKI.CAPath, devpki.AdminName))
	c := clientTrusting(t, ca)
	pair, _ := tls.LoadX509KeyPair(adminCert, adminKey)
	c.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{pair}
	do := func(method, id, doc string) (int, string) {
		req, _ := http.NewRequest(method, broker+"/admin/v1/posture-sources/"+id, strings.NewReader(doc))
		switch method {
		case http.MethodPut:
			req.Header.Set("If-None-Match", "*")
		case http.MethodDelete:
			req.Header.Set("If-Match", `"1"`)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	now := time.Now().Unix()
	workload := filepath.Join(dir, "token")
	os.WriteFile(workload, []byte(idp.Sign(map[string]any{"iss": idp.URL, "sub": "agent", "aud": broker, "iat": now, "exp": now + 600}, nil)), 0o600)
	report := filepath.Join(dir, "edr.jwt")
	os.WriteFile(report, []byte(edr.Sign(map[string]any{"iss": edr.URL, "sub": "agent", "iat": now, "exp": now + 600, "compliant": true}, nil)), 0o600)
	token := func() error {
		_, _, err := run(t, testEnv(nil), "token", "--broker", broker, "--ca", ca, "--audience", "https://tools.example/mcp",
			"--source", "file:"+workload, "--posture", report)
		return err
	}
	if token() == nil {
		t.Fatal("granted before any posture source exists")
	}
	// The file's rules: an allow on error, a source without a binding.
	status, body := do(http.MethodPut, "edr", fmt.Sprintf(`{"name":"edr","kind":"assertion","issuer":%q,"discovery":true,"ca_file":%q,"on_error":"allow"}`, edr.URL, edrCA))
	if status != 400 || !strings.Contains(body, `on_error: \"allow\" is not offered`) || !strings.Contains(body, "bind.identity: required") {
		t.Fatalf("an invalid source: %d %s", status, body)
	}
	status, body = do(http.MethodPut, "edr", fmt.Sprintf(`{"name":"edr","kind":"assertion","issuer":%q,"discovery":true,"ca_file":%q,"bind":{"identity":"subject","providers":["ci"]}}`, edr.URL, edrCA))
	if status != 201 {
		t.Fatalf("PUT: %d %s", status, body)
	}
	waitFor(t, 15*time.Second, "the store's posture source in force", func() bool { return token() == nil })
	if status, body := do(http.MethodDelete, "edr", ""); status != 204 {
		t.Fatalf("DELETE: %d %s", status, body)
	}
	waitFor(t, 15*time.Second, "the removed source out of force", func() bool { return token() != nil })
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
