package server

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/internal/devpki"
)

// TestCheckOnlineSPIFFEAndAdminCA: a trust domain's bundle file answers, a
// bundle endpoint that drops connections and an unreadable administrators' CA are
// each named.
func TestCheckOnlineSPIFFEAndAdminCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := devpki.Ensure(dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	raw, _ := federationtest.NewTrustDomain("a.example").Bundle().Marshal()
	bundle := filepath.Join(dir, "a.json")
	os.WriteFile(bundle, raw, 0o600)
	// A bundle endpoint that drops every connection.
	dropping, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dropping.Close()
	go func() {
		for {
			c, err := dropping.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	down := "https://" + dropping.Addr().String() + "/bundle"
	c := config.Defaults()
	c.Issuer, c.DataDir = "https://127.0.0.1:8443", filepath.Join(dir, "data")
	c.TLS.CertFile, c.TLS.KeyFile = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	c.SPIFFE.TrustDomains = []config.TrustDomain{
		{Name: "a.example", BundleFile: bundle},
		{Name: "b.example", BundleEndpoint: &config.BundleEndpoint{URL: down, Profile: "https_web"}},
	}
	c.Admin.ClientCAFile = filepath.Join(dir, "missing-ca.pem")
	got := map[string]CheckResult{}
	for _, r := range CheckOnline(context.Background(), &c, Options{Getenv: func(string) string { return "" }}) {
		got[r.Name] = r
	}
	if r := got["spiffe.trust_domains[0] (a.example)"]; r.Err != nil || !strings.HasPrefix(r.Detail, "bundle with 1 X.509 authorities") {
		t.Errorf("bundle file: %+v", r)
	}
	if r := got["spiffe.trust_domains[1] (b.example)"]; r.Err == nil {
		t.Errorf("a bundle endpoint nobody serves: %+v", r)
	}
	if r := got["admin.client_ca_file"]; r.Err == nil || !strings.Contains(r.Err.Error(), "missing-ca.pem") {
		t.Errorf("admin CA: %+v", r)
	}
	if r := got["store"]; r.Err != nil {
		t.Errorf("store: %+v", r)
	}
}
