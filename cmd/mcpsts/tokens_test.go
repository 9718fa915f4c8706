package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/internal/store"
)

// TestTokensRevokeCommand: mcpsts tokens revoke adds to the store's
// revocation list and to the audit log, and refuses an ambiguous request.
func TestTokensRevokeCommand(t *testing.T) {
	data := filepath.Join(t.TempDir(), "d")
	s := startServe(t, devEnv, "--dev", "--data", data, "--listen", "127.0.0.1:0")
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, devEnv, "tokens", "revoke", "--data", data, "--subject", "workload:dev/demo-agent")
	if err != nil || !strings.HasPrefix(out, "revoked subject workload:dev/demo-agent: refused from every replica's next check") {
		t.Fatalf("revoke = %q, %v", out, err)
	}
	st, err := store.Open(context.Background(), "sqlite:"+filepath.Join(data, "mcpsts.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if revoked, err := st.Revoked(context.Background(), "any", "workload:dev/demo-agent", "demo-agent", time.Now().Add(-time.Minute)); err != nil || !revoked {
		t.Fatalf("the store's list: %v %v", revoked, err)
	}
	log, _ := os.ReadFile(filepath.Join(data, "audit.log"))
	if !strings.Contains(string(log), `"event":"admin.token.revoke"`) || !strings.Contains(string(log), `"admin.target":"subject:workload:dev/demo-agent"`) {
		t.Fatalf("audit log:\n%s", log)
	}
	_, _, err = run(t, devEnv, "tokens", "revoke", "--data", data, "--jti", "a", "--client", "b")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitConfig {
		t.Fatalf("two kinds: %v", err)
	}
}
