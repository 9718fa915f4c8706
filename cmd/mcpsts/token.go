package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/exchange/client"
	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/internal/devpki"
	broker "github.com/mcpsts/mcpsts/internal/server"
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
	watch, json, exec                          bool
	poll                                       time.Duration
	// --dev: the development identity of a serve --dev in data.
	dev           bool
	data, subject string
	// --dpop: a DPoP-bound token, proven with the key of dpopKey (made
	// there when missing) or one made in memory.
	dpop    bool
	dpopKey string
	// --posture: the sources of signed posture assertions.
	posture []string
}

func newTokenCommand(e env) *cobra.Command {
	var f tokenFlags
	cmd := &cobra.Command{
		Use:   "token (--broker URL | --dev) --audience URI [--scope S…] [--source NAME] [--out FILE --watch | --json | --exec -- CMD ARGS…]",
		Short: "Get an access token for an MCP server with this workload's own credential",
		Long: `Exchange this workload's platform credential for an access token for one MCP
server. --source names where the credential comes from, and what each reads:

  auto          the first whose environment is present, in this order: k8s
                (the file exists), github, spiffe, aws, gcp, azure (it says
                which it chose)
  k8s           a projected service account token file:
                MCPSTS_K8S_TOKEN_FILE (default /var/run/secrets/mcpsts/token)
  github        a GitHub Actions OIDC token: ACTIONS_ID_TOKEN_REQUEST_URL,
                ACTIONS_ID_TOKEN_REQUEST_TOKEN (permissions: id-token: write)
  spiffe        a JWT-SVID from the SPIFFE Workload API: SPIFFE_ENDPOINT_SOCKET
  spiffe-mtls   the X.509-SVID from the Workload API, presented on the TLS
                connection (tls_client_auth): SPIFFE_ENDPOINT_SOCKET
  aws           a signed sts:GetCallerIdentity request: the AWS SDK's
                credential chain (AWS_ACCESS_KEY_ID…, AWS_WEB_IDENTITY_TOKEN_FILE,
                AWS_CONTAINER_CREDENTIALS_*, instance roles), AWS_REGION;
                MCPSTS_AWS_STS_ENDPOINT overrides the STS endpoint
  gcp           a Google ID token from the metadata server (GCE_METADATA_HOST
                overrides its address), or through the IAM Credentials API as
                MCPSTS_GCP_IMPERSONATE (a service account email)
  azure         an Entra ID token: workload identity (AZURE_FEDERATED_TOKEN_FILE,
                AZURE_CLIENT_ID, AZURE_TENANT_ID) or a managed identity
                (IDENTITY_ENDPOINT…, AZURE_CLIENT_ID for a user-assigned one);
                MCPSTS_AZURE_APP is the application ID URI asked for (default
                the broker's issuer)
  file:PATH     a JWT read from PATH at every use

--dev is the development identity of "mcpsts serve --dev": it signs a
short-lived workload JWT as the dev server's own provider, with the key in
its data directory (--data, default .mcpsts), for --subject (default
demo-agent), and exchanges it at that server (its issuer and CA are read from
the data directory). Only a dev server trusts it.

By default the token goes to stdout and nothing else does. --json prints the
whole token response. --out FILE writes it (mode 0600, atomically); with
--watch it is kept fresh until a signal. --exec -- CMD runs CMD with the token
in $MCPSTS_TOKEN (--env to rename) and its file in $MCPSTS_TOKEN_FILE, kept
fresh, forwarding signals and the exit code.

--dpop gets a DPoP-bound token (RFC 9449): every request proves a private key,
and so must every call to the MCP server. --dpop-key FILE reads the key (PEM),
or makes a P-256 key there (mode 0600) when FILE does not exist; without it
the key lives in memory, which only --exec can use: the child finds the key's
file in $MCPSTS_DPOP_KEY_FILE (removed when it exits). Go agents call MCP
servers through dpop.Transport with the same key.

--posture FILE sends the signed posture assertion (a JWT from an
endpoint-detection or compliance service) that the EDR agent keeps in FILE
with every request, read again for each (--watch and --exec refresh it with
the token); --posture "cmd:COMMAND ARGS" runs a command that prints one
instead. Repeatable, one per posture source.

Exit codes: 2 configuration, 3 credential (evidence) failed, 4 the broker
refused, 5 the broker is unreachable.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			err := runToken(cmd.Context(), f, args, e, cmd.OutOrStdout(), cmd.ErrOrStderr())
			var ee *exitError
			if err != nil && !errors.As(err, &ee) {
				err = classify(err)
			}
			return explainHint(err, f)
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
	fl.BoolVar(&f.exec, "exec", false, "run the command after -- with the token in its environment (see above)")
	fl.StringVar(&f.envName, "env", "MCPSTS_TOKEN", "with --exec: the environment variable that holds the token")
	fl.DurationVar(&f.poll, "poll", 5*time.Second, "how often a kept-fresh token is checked for renewal")
	fl.MarkHidden("poll")
	fl.BoolVar(&f.dpop, "dpop", false, "get a DPoP-bound token (see above)")
	fl.StringVar(&f.dpopKey, "dpop-key", "", "with --dpop: the PEM private key `FILE` (made when missing)")
	fl.BoolVar(&f.dev, "dev", false, "use the development identity of a serve --dev (see above)")
	fl.StringArrayVar(&f.posture, "posture", nil, "a signed posture assertion: a `FILE`, or cmd:COMMAND that prints one (repeatable; see above)")
	fl.StringVar(&f.data, "data", ".mcpsts", "with --dev: the dev server's data `directory`")
	fl.StringVar(&f.subject, "subject", broker.DevSubject, "with --dev: the development workload's `name`")
	cmd.MarkFlagRequired("audience")
	return cmd
}

// explainHint adds, to a refusal by the trust maps, the trustmap explain
// command that shows why (the broker says the reason code and its trace
// ID; the maps' details stay with the operator).
func explainHint(err error, f tokenFlags) error {
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Step != client.StepExchange || ce.Status != http.StatusBadRequest {
		return err
	}
	switch {
	case ce.Code == "invalid_scope", ce.Code == "invalid_target", strings.Contains(ce.Description, "no trust map grants"):
	default:
		return err
	}
	cmd := "mcpsts trustmap explain MAPS --identity IDENTITY.json"
	if f.dev {
		cmd = fmt.Sprintf("mcpsts trustmap explain %s --provider %s --subject %s", filepath.Join(f.data, "trustmaps"), config.DevProvider, f.subject)
	}
	cmd += " --audience " + f.audience
	for _, s := range f.scopes {
		cmd += " --scope " + s
	}
	code := exitDenied
	if ee := (*exitError)(nil); errors.As(err, &ee) {
		code = ee.code
	}
	return &exitError{code, fmt.Errorf("%w\nwhy: %s", err, cmd)}
}

// classify maps a client error to its exit code.
func classify(err error) error {
	var ce *client.Error
	switch {
	case !errors.As(err, &ce):
		return &exitError{exitConfig, err}
	case ce.Step == client.StepConfig:
		return &exitError{exitConfig, err}
	case ce.Step == client.StepEvidence, ce.Step == client.StepPosture:
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
	case f.exec && len(args) == 0:
		return &exitError{exitConfig, errors.New("--exec needs the command after --: mcpsts token … --exec -- CMD ARGS…")}
	case len(args) > 0 && (f.out != "" || f.json):
		return &exitError{exitConfig, errors.New("--exec goes alone (it keeps its own token file)")}
	}
	var src client.Source
	var err error
	if f.dev {
		if src, err = devSource(&f); err != nil {
			return &exitError{exitConfig, err}
		}
	} else if f.broker == "" {
		return &exitError{exitConfig, errors.New("--broker: required (or --dev, for the development identity of a serve --dev)")}
	} else if src, err = client.SourceByName(f.source, e.getenv); err != nil {
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
	signer, keyFile, err := dpopKey(f, len(args) > 0, e.now)
	if err != nil {
		return &exitError{exitConfig, err}
	}
	if keyFile != "" && f.dpopKey == "" {
		defer os.RemoveAll(filepath.Dir(keyFile))
	}
	var posture []client.PostureSource
	for _, p := range f.posture {
		posture = append(posture, client.ParsePosture(p))
	}
	c, err := client.New(f.broker, src, client.Options{HTTPClient: httpClient, Clock: e.now, DPoP: signer, Posture: posture})
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
		return execWithToken(ctx, ts, tok, f.envName, keyFile, args, f.poll, stderr)
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

// dpopKey is the key of --dpop: read from --dpop-key, made there when the
// file does not exist, or made in memory (then written to a file of a new
// private directory for --exec's child). It returns the key's file.
func dpopKey(f tokenFlags, exec bool, now func() time.Time) (*dpop.Signer, string, error) {
	switch {
	case !f.dpop && f.dpopKey != "":
		return nil, "", errors.New("--dpop-key goes with --dpop")
	case !f.dpop:
		return nil, "", nil
	case f.dpopKey == "" && !exec:
		return nil, "", errors.New("--dpop without --dpop-key: the key would be lost with this process; give --dpop-key FILE, or --exec")
	}
	var key crypto.Signer
	file := f.dpopKey
	if file != "" {
		k, err := dpop.ReadKey(file)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, "", fmt.Errorf("--dpop-key: %w", err)
		default:
			key = k
		}
	}
	if key == nil {
		k, err := dpop.GenerateKey()
		if err != nil {
			return nil, "", err
		}
		key = k
		if file == "" {
			dir, err := os.MkdirTemp("", "mcpsts-dpop")
			if err != nil {
				return nil, "", err
			}
			file = filepath.Join(dir, "dpop-key.pem")
		}
		if err := dpop.WriteKey(file, key); err != nil {
			return nil, "", fmt.Errorf("--dpop-key: %w", err)
		}
	}
	s, err := dpop.NewSigner(key, now)
	if err != nil {
		return nil, "", fmt.Errorf("--dpop-key: %w", err)
	}
	return s, file, nil
}

// devSource is the development identity of the serve --dev whose data
// directory is f.data; it fills in the broker and its CA from there unless
// given.
func devSource(f *tokenFlags) (client.Source, error) {
	if f.source != "auto" {
		return nil, errors.New("--dev is a source of its own: leave out --source")
	}
	key, err := devpki.LoadIdentityKey(f.data)
	if err != nil {
		return nil, fmt.Errorf("--dev: no development identity in %s (start mcpsts serve --dev --data %s first): %w", f.data, f.data, err)
	}
	if f.broker == "" {
		b, err := os.ReadFile(filepath.Join(f.data, devpki.IssuerFile))
		if err != nil {
			return nil, fmt.Errorf("--dev: the dev server's issuer is not in %s (is mcpsts serve --dev running?): %w", f.data, err)
		}
		f.broker = strings.TrimSpace(string(b))
	}
	if f.ca == "" {
		f.ca = filepath.Join(f.data, devpki.CAFile)
	}
	return client.DevSource{Key: key, KeyID: devpki.IdentityKeyID(key), Issuer: config.DevIssuer, Subject: f.subject}, nil
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
func execWithToken(ctx context.Context, ts *client.TokenSource, tok *client.Token, envName, dpopKeyFile string, args []string, poll time.Duration, stderr io.Writer) error {
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
	if dpopKeyFile != "" {
		cmd.Env = append(cmd.Env, "MCPSTS_DPOP_KEY_FILE="+dpopKeyFile)
	}
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
