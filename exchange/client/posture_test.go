package client_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpsts/mcpsts/exchange/client"
)

func TestPostureSources(t *testing.T) {
	dir := t.TempDir()
	jwt := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJob3N0In0.c2ln"
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	for _, tc := range []struct {
		name, spec string
		want, err  string
	}{
		{"file", write("ok.jwt", jwt+"\n"), jwt, ""},
		{"command", "cmd:cat " + write("cmd.jwt", jwt), jwt, ""},
		{"missing file", filepath.Join(dir, "none.jwt"), "", "no such file"},
		{"empty", write("empty.jwt", "\n"), "", "empty"},
		{"not a JWT", write("text.jwt", "compliant=true"), "", "not a JWT"},
		{"two JWTs", write("two.jwt", jwt+"\n"+jwt), "", "not a JWT"},
		{"too large", write("big.jwt", strings.Repeat("a", 20<<10)+".b.c"), "", "larger than"},
		{"failing command", "cmd:false", "", "exit status 1"},
		{"no command", "cmd:", "", "no command"},
	} {
		src := client.ParsePosture(tc.spec)
		got, err := src.Assertion(context.Background())
		if got != tc.want || (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s (%s): %q, %v; want %q, %q", tc.name, src.Name(), got, err, tc.want, tc.err)
		}
	}
}
