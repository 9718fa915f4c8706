package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/issuer"
)

// TestServeCheckOnline: serve --check --online tries what a first start
// needs and names each failure: an issuer that is down, a KEK that does not
// open the stored keys, a certificate that expires in 3 days.
func TestServeCheckOnline(t *testing.T) {
	idp := federationtest.NewIssuer(t)
	idpCA := filepath.Join(t.TempDir(), "idp.pem")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	cert, key, _ := productionFiles(t)
	data := t.TempDir()
	file := writeConfig(t, fmt.Sprintf(`issuer: https://127.0.0.1:8443
listen: 127.0.0.1:0
data_dir: %s
tls: {cert_file: %s, key_file: %s}
providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}
`, data, cert, key, idp.URL, idpCA))
	check := func(e env) (string, error) {
		t.Helper()
		out, _, err := run(t, e, "serve", "--config", file, "--check", "--online")
		return out, err
	}
	has := func(out string, lines ...string) {
		t.Helper()
		for _, l := range lines {
			if !strings.Contains(out, l) {
				t.Errorf("output lacks %q:\n%s", l, out)
			}
		}
	}

	// Before the first start: nothing to open yet, the provider answers.
	out, err := check(testEnv(nil))
	if err != nil {
		t.Fatalf("first check: %v\n%s", err, out)
	}
	has(out, "ok   store: SQLite file "+filepath.Join(data, "mcpsts.db")+" does not exist yet: a start creates it",
		"ok   tls: "+cert+" valid for 127.0.0.1, expires ",
		"ok   providers[0] (ci): "+idp.URL+": discovery, 1 keys (RS256)")
	if _, err := os.Stat(filepath.Join(data, "mcpsts.db")); err == nil {
		t.Fatal("the check created the database")
	}

	// After a start: the store's schema and the keys.
	s := startServe(t, testEnv(nil), "--config", file)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	out, err = check(testEnv(nil))
	if err != nil {
		t.Fatalf("check after a start: %v\n%s", err, out)
	}
	has(out, "ok   store: sqlite at schema version ", "ok   signing keys: 1 stored, 1 that sign or will open with the KEK")

	// The issuer down and another KEK: each named, non-zero exit.
	idp.SetDown(true)
	other, _ := issuer.GenerateKEK()
	out, err = check(testEnv(map[string]string{"MCPSTS_KEK": string(other)}))
	if err == nil || err.Error() != "2 online checks failed" {
		t.Fatalf("check with the issuer down and another KEK: %v\n%s", err, out)
	}
	has(out, "FAIL signing keys: ", "cannot decrypt the private key: wrong key-encryption key", "FAIL providers[0] (ci): ")
	idp.SetDown(false)

	// 87 days on, the 90-day certificate has 3 left.
	later := testEnv(nil)
	later.now = func() time.Time { return time.Now().Add(87 * 24 * time.Hour) }
	out, err = check(later)
	if err == nil {
		t.Fatalf("check with a certificate expiring in 3 days passed:\n%s", out)
	}
	has(out, "FAIL tls: "+cert+" expires ", ", in 3 days: renew it before deploying")
}
