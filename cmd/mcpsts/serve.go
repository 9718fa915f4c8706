package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/internal/devpki"
	broker "github.com/mcpsts/mcpsts/internal/server"
)

type serveFlags struct {
	dev    bool
	config string
	check  bool
	online bool
	data   string
	listen string
}

func newServeCommand(e env) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve (--dev | --config FILE [--check [--online]])",
		Short: "Run the mcpsts server over HTTPS",
		Long: `Run the mcpsts server.

--dev runs on embedded defaults: a data directory (--data) holding a SQLite
database, a local CA and a server certificate for localhost and 127.0.0.1,
listening on --listen. Restarting reuses them.

--config FILE runs from a YAML configuration; --check only validates it, and
with --online also tries what a first start needs, changing nothing: the
store answers at a schema this build can use, the signing keys open with the
KEK, the TLS certificate is valid for the issuer's host and not within 14 days
of expiry, every provider's discovery and key set can be fetched, every SPIFFE
bundle source answers, the administrators' CA can be read. It prints a line
for each and exits non-zero if one fails: run it in CI before a deploy.
These environment variables override the file: ` + strings.Join(config.EnvVars(), ", ") + `.
Tracing is configured by the standard OTEL_* variables (OTEL_TRACES_EXPORTER=otlp|console|none).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.validate(cmd); err != nil {
				return usageError(cmd, err)
			}
			return runServe(cmd.Context(), f, e, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.dev, "dev", false, "run on embedded defaults (SQLite, generated local CA and keys)")
	fl.StringVar(&f.config, "config", "", "YAML configuration `file`")
	fl.BoolVar(&f.check, "check", false, "validate the --config file and exit")
	fl.BoolVar(&f.online, "online", false, "with --check: also try the store, keys, certificate, providers and bundle sources")
	fl.StringVar(&f.data, "data", ".mcpsts", "with --dev: data `directory`")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8443", "with --dev: HTTPS listen `address` (port 0 picks a free port)")
	cmd.MarkFlagsMutuallyExclusive("dev", "config")
	return cmd
}

func (f serveFlags) validate(cmd *cobra.Command) error {
	switch {
	case !f.dev && f.config == "":
		return errors.New("serve needs --dev or --config FILE")
	case f.check && f.config == "":
		return errors.New("--check validates a --config file")
	case f.online && !f.check:
		return errors.New("--online goes with --check")
	case f.config != "" && (cmd.Flags().Changed("data") || cmd.Flags().Changed("listen")):
		return errors.New("--data and --listen go with --dev; with --config set data_dir and listen in the file (or MCPSTS_DATA_DIR, MCPSTS_LISTEN)")
	case f.dev:
		if p := config.ListenProblem(f.listen); p != "" {
			return fmt.Errorf("--listen: %s", p)
		}
		if f.data == "" {
			return errors.New("--data: required")
		}
	}
	return nil
}

func runServe(ctx context.Context, f serveFlags, e env, stdout, stderr io.Writer) error {
	var cfg *config.Config
	if f.dev {
		cfg = devConfig(f.data, f.listen)
	} else {
		var err error
		if cfg, err = config.Load(f.config, e.getenv, e.now()); err != nil {
			return &exitError{exitConfig, fmt.Errorf("invalid configuration:\n%w", err)}
		}
		if f.check {
			fmt.Fprintf(stdout, "%s: configuration is valid\n", f.config)
			if f.online {
				return checkOnline(ctx, cfg, e, stdout)
			}
			return nil
		}
	}
	opts := broker.Options{Dev: f.dev, Getenv: e.getenv, Now: e.now, Log: newLogger(stderr, cfg.Log), Version: version()}
	if e.listener != nil {
		opts.Listener = e.listener(cfg.Listen)
	}
	s, err := broker.New(ctx, cfg, opts)
	switch {
	case errors.Is(err, syscall.EADDRINUSE) && f.dev:
		return &exitError{exitConfig, fmt.Errorf("%w: another process listens on %s; give serve --dev another address with --listen (127.0.0.1:0 picks a free port)", err, cfg.Listen)}
	case errors.Is(err, syscall.EADDRINUSE):
		return &exitError{exitConfig, fmt.Errorf("%w: another process listens on %s; set listen in %s (or MCPSTS_LISTEN)", err, cfg.Listen, f.config)}
	case err != nil:
		return err
	}
	if f.dev {
		printDevBanner(stdout, s.Issuer, s.Addr, s.CAPath, cfg.DataDir, s.AdminCert)
	}
	return s.Run(ctx)
}

// checkOnline prints a line for each check of a first start, and fails if
// one does.
func checkOnline(ctx context.Context, cfg *config.Config, e env, stdout io.Writer) error {
	failed := 0
	for _, r := range broker.CheckOnline(ctx, cfg, broker.Options{Getenv: e.getenv, Now: e.now}) {
		if r.Err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %v\n", r.Name, r.Err)
			continue
		}
		fmt.Fprintf(stdout, "ok   %s: %s\n", r.Name, r.Detail)
	}
	if failed > 0 {
		return fmt.Errorf("%d online checks failed", failed)
	}
	return nil
}

func printDevBanner(w io.Writer, issuer string, addr net.Addr, caPath, dataDir, adminCert string) {
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	absCA, absData, absAdmin := abs(caPath), abs(dataDir), abs(adminCert)
	absAdminKey := strings.TrimSuffix(absAdmin, devpki.AdminCertFile) + devpki.AdminKeyFile
	// The first token, with the development identity and the sample map;
	// the data directory is named when it is not the default.
	data := ""
	if filepath.Clean(dataDir) != ".mcpsts" {
		data = " --data " + dataDir
	}
	self := "mcpsts"
	if exe, err := os.Executable(); err == nil && strings.Contains(exe, "go-build") {
		self = "go run ./cmd/mcpsts" // started with go run
	}
	fmt.Fprintf(w, `mcpsts is serving in development mode (embedded SQLite, local CA)
  issuer:    %s
  listening: %s
  trust CA:  %s
  data:      %s
  admin:     client certificate %s, key %s
  try:       %s token --dev%s --audience %s --scope files:read
  explain:   %s trustmap explain %s --provider dev --subject %s --audience %s
  metadata:  curl --cacert %s %s/.well-known/oauth-authorization-server
`, issuer, addr, absCA, absData, absAdmin, absAdminKey,
		self, data, broker.DevDemoAudience,
		self, filepath.Join(dataDir, "trustmaps"), broker.DevSubject, broker.DevDemoAudience,
		absCA, issuer)
}

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level)) // validated; "" is info
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
