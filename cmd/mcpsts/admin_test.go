package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/issuer"
)

// TestAdminAPI: the running server's admin API accepts a broker token with
// the admin scope, stores a map, and puts it in force.
func TestAdminAPI(t *testing.T) {
	data := filepath.Join(t.TempDir(), "d")
	s := startServe(t, devEnv, "--dev", "--data", data, "--listen", "127.0.0.1:0")
	c := clientTrusting(t, s.caPath)

	// Mint an admin token with the server's own keys, as the token
	// endpoint will for a trust map that grants the admin scope.
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(data, "mcpsts.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	text, _ := os.ReadFile(filepath.Join(data, "kek"))
	kek, _ := issuer.ParseKEK(text)
	minter, _ := issuer.New(issuer.Config{Issuer: s.issuer, Store: st, Backends: []issuer.Backend{&issuer.LocalKeys{KEK: kek, Algorithm: issuer.ES256}}})
	if err := minter.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	tok, err := minter.Mint(ctx, issuer.Grant{Subject: "ops", Audience: s.issuer + "/admin", ClientID: "terraform", Scopes: []string{"mcpsts:admin"}})
	if err != nil {
		t.Fatal(err)
	}

	send := func(method, path, body string, h map[string]string) (int, map[string]any) {
		req, _ := http.NewRequest(method, "https://"+s.addr+path, bytes.NewReader([]byte(body)))
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		json.Unmarshal(raw, &out)
		if resp.Header.Get("Strict-Transport-Security") == "" {
			t.Errorf("%s %s: no HSTS", method, path)
		}
		return resp.StatusCode, out
	}
	if status, _ := send("GET", "/admin/v1/trust-maps", "", nil); status != 401 {
		t.Fatalf("admin API without a token = %d", status)
	}
	// Metrics are scraped from the admin API, with the same authorization.
	scrape := func(h map[string]string) (int, string) {
		req, _ := http.NewRequest("GET", "https://"+s.addr+"/admin/v1/metrics", nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, _ := scrape(nil); status != 401 {
		t.Fatalf("metrics without a token = %d", status)
	}
	if status, body := scrape(map[string]string{"Authorization": "Bearer " + tok.Raw}); status != 200 ||
		!regexp.MustCompile(`(?m)^mcpsts_issuer_key_age_seconds\{.*kid="[^"]+".*\} \d`).MatchString(body) ||
		!strings.Contains(body, `http_server_request_duration_seconds_count{`) {
		t.Fatalf("metrics = %d\n%s", status, body)
	}
	auth := map[string]string{"Authorization": "Bearer " + tok.Raw, "If-None-Match": "*"}
	doc := `{"id":"ops","match":{"provider":"github","subject":"repo:ops/infra"},"grant":{"client_id":"deployer","audiences":["https://deploy.example.com/mcp"]}}`
	if status, body := send("PUT", "/admin/v1/trust-maps/ops", doc, auth); status != 201 {
		t.Fatalf("create = %d %v", status, body)
	}
	// The change and the refused request are in the audit log, with the
	// administrator who made the change.
	ls := waitLines(t, filepath.Join(data, "audit.log"), 3)
	if !strings.Contains(ls[0], `"event":"admin.trust_map.list"`) || !strings.Contains(ls[0], `"admin.result":"unauthenticated"`) ||
		!strings.Contains(ls[1], `"event":"admin.metrics.scrape"`) || !strings.Contains(ls[1], `"admin.result":"unauthenticated"`) ||
		!strings.Contains(ls[2], `"event":"admin.trust_map.put"`) || !strings.Contains(ls[2], `"admin.principal":"`) ||
		!strings.Contains(ls[2], `"admin.target":"ops"`) || !strings.Contains(ls[2], `"admin.result":"ok"`) {
		t.Fatalf("audit log:\n%s", strings.Join(ls, "\n"))
	}
	// In --dev, the generated administrator's certificate is an admin.
	pair, err := tls.LoadX509KeyPair(filepath.Join(data, "admin.pem"), filepath.Join(data, "admin-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	adminClient := clientTrusting(t, s.caPath)
	adminClient.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{pair}
	resp, err := adminClient.Get("https://" + s.addr + "/admin/v1/trust-maps/ops")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(s.stdout.String(), "admin.pem") {
		t.Fatalf("dev administrator certificate: %d; banner %s", resp.StatusCode, s.stdout.String())
	}
	status, body := send("POST", "/admin/v1/explain", `{"identity":{"provider":"github","subject":"repo:ops/infra"},"request":{"audience":"https://deploy.example.com/mcp"}}`, auth)
	if status != 200 || body["decision"] == nil {
		t.Fatalf("explain after create = %d %v", status, body)
	}
}
