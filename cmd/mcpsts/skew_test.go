package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/resource"
)

// TestClockSkew: the workloads' issuer, the broker and a resource server
// with clocks minutes apart, within and beyond each leeway (the broker's
// per provider, default 60s; the resource server's, default 30s): exact
// outcomes. The broker keeps real time; the others are skewed from it.
func TestClockSkew(t *testing.T) {
	const files = "https://files.example.com/mcp"
	strict, lenient := federationtest.NewIssuer(t), federationtest.NewIssuer(t)
	dir := t.TempDir()
	strictCA, lenientCA := filepath.Join(dir, "strict.pem"), filepath.Join(dir, "lenient.pem")
	os.WriteFile(strictCA, strict.CAPEM(), 0o600)
	os.WriteFile(lenientCA, lenient.CAPEM(), 0o600)
	auditFile := filepath.Join(dir, "audit.log")
	// check is the audit line's deny.check for the request of a
	// trace (the client sees only "the credential was refused").
	check := func(trace string) string {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			data, _ := os.ReadFile(auditFile)
			for _, line := range strings.Split(string(data), "\n") {
				if strings.Contains(line, trace) {
					var rec map[string]any
					json.Unmarshal([]byte(line), &rec)
					c, _ := rec["deny.check"].(string)
					return c
				}
			}
		}
		return "(no audit line)"
	}
	broker, ca := serveBroker(t, `id: strict
match: {provider: strict, subject: agent}
grant: {client_id: agent, audiences: ["`+files+`"], max_ttl: 15m}
---
id: lenient
match: {provider: lenient, subject: agent}
grant: {client_id: agent, audiences: ["`+files+`"], max_ttl: 15m}
`, fmt.Sprintf(`limits: {per_identity: {rate: 0}, per_client: {rate: 0}, per_source: {rate: 0}}
audit: {file: %s, repeat_interval: 1s}
providers:
  - {name: strict, issuer: %s, discovery: true, ca_file: %s}
  - {name: lenient, issuer: %s, discovery: true, ca_file: %s, leeway: 3m}`, auditFile, strict.URL, strictCA, lenient.URL, lenientCA))
	c := clientTrusting(t, ca)
	exchange := func(idp *federationtest.Issuer, skew time.Duration) (int, map[string]any) {
		t.Helper()
		now := time.Now().Add(skew).Unix()
		tok := idp.Sign(map[string]any{"iss": idp.URL, "sub": "agent", "aud": broker, "iat": now, "nbf": now, "exp": now + 300}, nil)
		resp, err := c.PostForm(broker+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"subject_token": {tok}, "subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {files}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	// The workloads' issuer skewed from the broker (tokens live 5 minutes).
	for _, tc := range []struct {
		name   string
		idp    *federationtest.Issuer
		skew   time.Duration
		status int
		check  string
	}{
		{"issuer 30s ahead, leeway 60s", strict, 30 * time.Second, 200, ""},
		{"issuer 2m ahead, leeway 60s", strict, 2 * time.Minute, 400, "token_not_yet_valid"},
		{"issuer 2m ahead, leeway 3m", lenient, 2 * time.Minute, 200, ""},
		{"issuer 4m ahead, leeway 3m", lenient, 4 * time.Minute, 400, "token_not_yet_valid"},
		{"issuer 5m30s behind (expired 30s ago), leeway 60s", strict, -5*time.Minute - 30*time.Second, 200, ""},
		{"issuer 7m behind (expired 2m ago), leeway 60s", strict, -7 * time.Minute, 400, "token_expired"},
		{"issuer 7m behind (expired 2m ago), leeway 3m", lenient, -7 * time.Minute, 200, ""},
	} {
		status, body := exchange(tc.idp, tc.skew)
		if status != tc.status {
			t.Errorf("%s: %d %v, want %d", tc.name, status, body, tc.status)
			continue
		}
		if tc.status == 200 {
			continue
		}
		trace, _ := body["trace_id"].(string)
		if body["error"] != "invalid_request" || body["error_description"] != "the credential was refused" || check(trace) != tc.check {
			t.Errorf("%s: %v, check %s; want invalid_request, %s", tc.name, body, check(trace), tc.check)
		}
		// Anonymous refusals of one kind from one source are written
		// once an interval, then counted: the next case's starts anew.
		time.Sleep(1100 * time.Millisecond)
	}

	// A resource server skewed from the broker (access tokens live 15m).
	status, body := exchange(strict, 0)
	if status != 200 {
		t.Fatalf("token: %d %v", status, body)
	}
	access := body["access_token"].(string)
	for _, tc := range []struct {
		name   string
		skew   time.Duration
		leeway time.Duration
		status int
		desc   string
	}{
		{"resource 20s behind, leeway 30s", -20 * time.Second, 0, 200, ""},
		{"resource 2m behind, leeway 30s", -2 * time.Minute, 0, 401, "not valid yet"},
		{"resource 2m behind, leeway 3m", -2 * time.Minute, 3 * time.Minute, 200, ""},
		{"resource 14m ahead, leeway 30s", 14 * time.Minute, 0, 200, ""},
		{"resource 16m ahead, leeway 30s", 16 * time.Minute, 0, 401, "expired"},
		{"resource 16m ahead, leeway 3m", 16 * time.Minute, 3 * time.Minute, 200, ""},
	} {
		skew := tc.skew
		rs, err := resource.New(resource.Config{Resource: files, Issuer: broker, Transport: c.Transport, Leeway: tc.leeway,
			Clock: func() time.Time { return time.Now().Add(skew) }})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, files, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Authorization", "Bearer "+access)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		rs.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(rec, req)
		challenge := rec.Header().Get("WWW-Authenticate")
		if rec.Code != tc.status || (tc.status != 200 && (!strings.Contains(challenge, `error="invalid_token"`) || !strings.Contains(challenge, tc.desc))) {
			t.Errorf("%s: %d %s, want %d %q", tc.name, rec.Code, challenge, tc.status, tc.desc)
		}
	}
}
