package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestConsentCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "d")
	s := startServe(t, devEnv, "--dev", "--data", data, "--listen", "127.0.0.1:0")
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, devEnv, "consent", "grant", "--data", data, "--provider", "corp", "--user", "alice",
		"--client", "mail-agent", "--scope", "mail:read", "--resource", "https://Mail.example.com/", "--ttl", "24h")
	m := regexp.MustCompile(`^granted consent ([0-9a-f]{24}), until \S+\n$`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("grant = %q, %v", out, err)
	}
	out, _, _ = run(t, devEnv, "consent", "list", "--data", data, "--user", "alice")
	if !strings.Contains(out, m[1]) || !strings.Contains(out, "[https://mail.example.com]") || !strings.Contains(out, "active") {
		t.Fatalf("list = %q", out)
	}
	if out, _, err := run(t, devEnv, "consent", "revoke", "--data", data, m[1]); err != nil || out != "revoked consent "+m[1]+"\n" {
		t.Fatalf("revoke = %q, %v", out, err)
	}
	out, _, _ = run(t, devEnv, "consent", "list", "--data", data)
	if !strings.Contains(out, "revoked") {
		t.Fatalf("list after revoke = %q", out)
	}
	_, _, err = run(t, devEnv, "consent", "grant", "--data", data, "--provider", "corp", "--client", "c", "--resource", "https://a.example")
	if err == nil || !strings.Contains(err.Error(), "user: required") {
		t.Fatalf("grant without --user: %v", err)
	}
	if _, _, err := run(t, devEnv, "consent", "revoke", "--data", data, "nope"); err == nil || !strings.Contains(err.Error(), "no such consent") {
		t.Fatalf("revoke unknown: %v", err)
	}
}
