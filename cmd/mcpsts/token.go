package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpsts/mcpsts/exchange/client"
)

// Exit codes of mcpsts token.
const (
	exitConfig      = 2 // bad flags or configuration
	exitEvidence    = 3 // the platform credential could not be had
	exitDenied      = 4 // the broker refused the exchange
	exitUnreachable = 5 // the broker could not be reached
)

// exitError carries a process exit code to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

type tokenFlags struct {
	broker, audience, source, ca, out, envName string
	scopes                                     []string
	watch, json                                bool
	poll                                       time.Duration
}

func newTokenCommand(e env) *cobra.Command {
	var f tokenFlags
	cmd := &cobra.Command{
		Use:   "token --broker URL --audience URI [--scope S…] [--source NAME] [--out FILE --watch | --json | --exec -- CMD ARGS…]",
		Short: "Get an access token for an MCP server with this workload's own credential",
		Long: `Exchange this workload's platform credential for an access token for one MCP
server. Sources: auto (default), k8s (projected token file, MCPSTS_K8S_TOKEN_FILE),
github (Actions OIDC), spiffe (JWT-SVID from the Workload API), spiffe-mtls
(the X.509-SVID on the connection), file:PATH.

By default the token goes to stdout and nothing else does. --json prints the
whole token response. --out FILE writes it (mode 0600, atomically); with
--watch it is kept fresh until a signal. --exec -- CMD runs CMD with the token
in $MCPSTS_TOKEN (--env to rename) and its file in $MCPSTS_TOKEN_FILE, kept
fresh, forwarding signals and the exit code.

Exit codes: 2 configuration, 3 credential (evidence) failed, 4 the broker
refused, 5 the broker is unreachable.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			err := runToken(cmd.Context(), f, args, e, cmd.OutOrStdout(), cmd.ErrOrStderr())
			var ee *exitError
			if err != nil && !errors.As(err, &ee) {
				err = classify(err)
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.broker, "broker", "", "the broker's issuer `URL` (https)")
	fl.StringVar(&f.audience, "audience", "", "the MCP server's resource `URI`")
	fl.StringArrayVar(&f.scopes, "scope", nil, "a scope to request (repeatable; none: the trust map's defaults)")
	fl.StringVar(&f.source, "source", "auto", "evidence source")
	fl.StringVar(&f.ca, "ca", "", "PEM `file` of the CA to trust for the broker (default: the system pool)")
	fl.StringVar(&f.out, "out", "", "write the token to `FILE`")
	fl.BoolVar(&f.watch, "watch", false, "with --out: keep the file fresh until signalled")
	fl.BoolVar(&f.json, "json", false, "print the whole token response as JSON")
	fl.StringVar(&f.envName, "env", "MCPSTS_TOKEN", "with --exec: the environment variable that holds the token")
	fl.DurationVar(&f.poll, "poll", 5*time.Second, "how often a kept-fresh token is checked for renewal")
	fl.MarkHidden("poll")
	cmd.MarkFlagRequired("broker")
	cmd.MarkFlagRequired("audience")
	return cmd
}

// classify maps a client error to its exit code.
func classify(err error) error {
	var ce *client.Error
	switch {
	case !errors.As(err, &ce):
		return &exitError{exitConfig, err}
	case ce.Step == client.StepConfig:
		return &exitError{exitConfig, err}
	case ce.Step == client.StepEvidence:
		return &exitError{exitEvidence, err}
	case client.IsUnreachable(err) || ce.Status == 0:
		return &exitError{exitUnreachable, err}
	}
	return &exitError{exitDenied, err}
}

func runToken(ctx context.Context, f tokenFlags, args []string, e env, stdout, stderr io.Writer) error {
	switch {
	case f.watch && f.out == "":
		return &exitError{exitConfig, errors.New("--watch needs --out FILE")}
	case len(args) > 0 && (f.out != "" || f.json):
		return &exitError{exitConfig, errors.New("--exec goes alone (it keeps its own token file)")}
	}
	src, err := client.SourceByName(f.source, e.getenv)
	if err != nil {
		return &exitError{exitConfig, fmt.Errorf("--source: %w", err)}
	}
	fmt.Fprintf(stderr, "mcpsts token: evidence source %s\n", src.Name())
	httpClient := &http.Client{Timeout: 30 * time.Second}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return &exitError{exitConfig, fmt.Errorf("--ca: %w", err)}
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return &exitError{exitConfig, fmt.Errorf("--ca %s: no PEM certificates", f.ca)}
		}
		httpClient.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	}
	c, err := client.New(f.broker, src, client.Options{HTTPClient: httpClient, Clock: e.now})
	if err != nil {
		return err
	}
	ts := c.TokenSource(f.audience, f.scopes...)
	tok, err := ts.Get(ctx)
	if err != nil {
		return err
	}
	switch {
	case len(args) > 0:
		return execWithToken(ctx, ts, tok, f.envName, args, f.poll, stderr)
	case f.out != "":
		if err := writeToken(f.out, tok.AccessToken); err != nil {
			return &exitError{exitConfig, err}
		}
		if f.watch {
			keepFresh(ctx, ts, f.out, tok.AccessToken, f.poll, stderr)
		}
		return nil
	case f.json:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(tok)
	}
	_, err = fmt.Fprintln(stdout, tok.AccessToken)
	return err
}

// writeToken replaces path with the token, mode 0600, atomically.
func writeToken(path, token string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(token); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// keepFresh rewrites path whenever the token source yields a new token
// (checking every poll; the TokenSource decides when to exchange), until
// ctx is done. Failures are reported and retried.
func keepFresh(ctx context.Context, ts *client.TokenSource, path, current string, poll time.Duration, stderr io.Writer) {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tok, err := ts.Get(ctx)
		switch {
		case err != nil:
			fmt.Fprintf(stderr, "mcpsts token: refresh failed: %v\n", err)
		case tok.AccessToken != current:
			if err := writeToken(path, tok.AccessToken); err != nil {
				fmt.Fprintf(stderr, "mcpsts token: write %s: %v\n", path, err)
				continue
			}
			current = tok.AccessToken
		}
	}
}

// execWithToken runs args with the token in its environment and a token
// file kept fresh beside it; signals go to the child; its exit code is
// ours.
func execWithToken(ctx context.Context, ts *client.TokenSource, tok *client.Token, envName string, args []string, poll time.Duration, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "mcpsts-token")
	if err != nil {
		return &exitError{exitConfig, err}
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "token")
	if err := writeToken(file, tok.AccessToken); err != nil {
		return &exitError{exitConfig, err}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envName+"="+tok.AccessToken, "MCPSTS_TOKEN_FILE="+file)
	if err := cmd.Start(); err != nil {
		return &exitError{exitConfig, fmt.Errorf("--exec %s: %w", args[0], err)}
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	freshCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	go keepFresh(freshCtx, ts, file, tok.AccessToken, poll, stderr)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			cmd.Process.Signal(s)
		case err := <-done:
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				return &exitError{exit.ExitCode(), fmt.Errorf("%s exited with %d", args[0], exit.ExitCode())}
			}
			return err
		}
	}
}
