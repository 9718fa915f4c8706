package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/internal/config"
)

func devConfig(t *testing.T) *config.Config {
	t.Helper()
	c := config.Defaults()
	c.DataDir, c.Listen = filepath.Join(t.TempDir(), "data"), "127.0.0.1:0"
	return &c
}

// runDev assembles a development server with cfg and runs it until the
// test ends; it returns the server and the pool of its CA.
func runDev(t *testing.T, cfg *config.Config) (*Server, *x509.CertPool) {
	t.Helper()
	s, err := New(context.Background(), cfg, Options{Dev: true, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	pem, err := os.ReadFile(s.CAPath)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return s, roots
}

// TestNewRun: New assembles a development server on a free port, Run
// serves it (ready: store and signing keys) until its context ends, and
// returns nil then.
func TestNewRun(t *testing.T) {
	cfg := devConfig(t)
	s, err := New(context.Background(), cfg, Options{Dev: true, Getenv: func(string) string { return "" }, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.Issuer, "https://127.0.0.1:") || s.Issuer != "https://"+s.Addr.String() || s.CAPath == "" || s.AdminCert == "" {
		t.Fatalf("server %+v", s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	pem, err := os.ReadFile(s.CAPath)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := c.Get(s.Issuer + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/readyz = %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestNewFailureLeavesNothing: a start that fails (the port is taken)
// closes what it opened and removes the data directory it created.
func TestNewFailureLeavesNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := devConfig(t)
	cfg.Listen = busy.Addr().String()
	if _, err := New(context.Background(), cfg, Options{Dev: true, Getenv: func(string) string { return "" }}); err == nil {
		t.Fatal("New on a taken port succeeded")
	}
	if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
		t.Fatalf("the data directory was left behind: %v", err)
	}
}

// TestErrorPageReference: a browser flow's error page gives the person a
// reference to quote (the request's trace ID), and never sends them back
// to an unverified client.
func TestErrorPageReference(t *testing.T) {
	s, roots := runDev(t, devConfig(t))
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	req, _ := http.NewRequest(http.MethodGet, s.Issuer+"/authorize?response_type=code&client_id=nobody&redirect_uri=http://127.0.0.1:9/cb", nil)
	req.Header.Set("Accept-Language", "fr")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("Location") != "" ||
		!regexp.MustCompile(`Référence pour votre administrateur : [0-9a-f]{32}<`).Match(body) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

// TestAdminClientIDs: the admin API cannot give a client the prefix of
// dynamic registrations, which marks clients no administrator vetted.
func TestAdminClientIDs(t *testing.T) {
	docs := clientDocuments(nil, nil)
	if p := docs.Check(context.Background(), "dcr-mine", []byte(`{"client_id":"dcr-mine","grant_types":["authorization_code"],"redirect_uris":["https://app.example.com/cb"]}`)); len(p) != 1 ||
		p[0] != `client_id: "dcr-mine": the prefix dcr- is for clients registered dynamically` {
		t.Fatalf("problems %v", p)
	}
	if p := docs.Check(context.Background(), "mine", []byte(`{"client_id":"mine","grant_types":["authorization_code"],"redirect_uris":["https://app.example.com/cb"]}`)); len(p) != 0 {
		t.Fatalf("problems %v", p)
	}
}

// TestEveryRouteLimited (issue 32): the per-source limit holds on every
// route, the browser endpoints and the metadata included, before anything
// is read, audited or logged: past it, 429 with Retry-After.
func TestEveryRouteLimited(t *testing.T) {
	cfg := devConfig(t)
	cfg.Limits.PerSource = config.RateLimit{Rate: 0.01, Burst: 5}
	s, roots := runDev(t, cfg)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var statuses []int
	for _, path := range []string{"/authorize?client_id=nobody", "/authorize?client_id=nobody", "/consents", "/.well-known/oauth-authorization-server",
		"/authorize?client_id=nobody", "/authorize?client_id=nobody", "/login/dev?state=x", "/.well-known/oauth-authorization-server"} {
		resp, err := c.Get(s.Issuer + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
		if resp.StatusCode == 429 && resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: 429 without Retry-After", path)
		}
	}
	if fmt.Sprint(statuses[5:]) != "[429 429 429]" || slices.Contains(statuses[:5], 429) {
		t.Fatalf("statuses %v, want 5 answered, then 429", statuses)
	}
}
