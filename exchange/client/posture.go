package client

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// PostureSource gives the signed posture assertion (a JWT from an
// endpoint-detection or compliance service) that goes with every token
// request as a posture_token; it is read again for each request, so a
// refreshed token carries a fresh report.
type PostureSource interface {
	Name() string
	Assertion(ctx context.Context) (string, error)
}

// maxAssertion bounds what a posture source may give, in bytes.
const maxAssertion = 16 << 10

// PostureFile reads the assertion from a file that the EDR agent keeps
// fresh.
type PostureFile struct{ Path string }

func (f PostureFile) Name() string { return "file:" + f.Path }

func (f PostureFile) Assertion(context.Context) (string, error) {
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return "", err
	}
	return assertion(b)
}

// PostureCommand runs a command that prints the assertion on its standard
// output (at most 10 s).
type PostureCommand struct{ Argv []string }

func (c PostureCommand) Name() string { return "cmd:" + strings.Join(c.Argv, " ") }

func (c PostureCommand) Assertion(ctx context.Context) (string, error) {
	if len(c.Argv) == 0 {
		return "", fmt.Errorf("no command")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return "", fmt.Errorf("%v: %s", err, msg)
	}
	return assertion(out.Bytes())
}

// ParsePosture reads the --posture form: cmd:COMMAND ARGS… runs a command
// (split at spaces, no shell), anything else is a file.
func ParsePosture(s string) PostureSource {
	if rest, ok := strings.CutPrefix(s, "cmd:"); ok {
		return PostureCommand{Argv: strings.Fields(rest)}
	}
	return PostureFile{Path: s}
}

// assertion checks that b holds one compact JWS, and nothing else.
func assertion(b []byte) (string, error) {
	s := strings.TrimSpace(string(b))
	switch {
	case s == "":
		return "", fmt.Errorf("empty: no assertion")
	case len(s) > maxAssertion:
		return "", fmt.Errorf("larger than %d bytes", maxAssertion)
	case strings.Count(s, ".") != 2 || strings.ContainsAny(s, " \t\r\n"):
		return "", fmt.Errorf("not a JWT (compact JWS)")
	}
	return s, nil
}
