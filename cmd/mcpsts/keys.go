package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/attribute"

	"github.com/mcpsts/mcpsts/internal/admin"
	"github.com/mcpsts/mcpsts/internal/auditlog"
	"github.com/mcpsts/mcpsts/internal/config"
	broker "github.com/mcpsts/mcpsts/internal/server"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/issuer"
)

type keysFlags struct {
	config string
	data   string
}

func newKeysCommand(e env) *cobra.Command {
	var f keysFlags
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "List and rotate the token signing keys",
		Long: `List and rotate the token signing keys in the store of a --config file, or
of the --dev data directory (--data). Running servers pick changes up within
30 seconds.`,
	}
	cmd.PersistentFlags().StringVar(&f.config, "config", "", "YAML configuration `file` (else the --dev data directory)")
	cmd.PersistentFlags().StringVar(&f.data, "data", ".mcpsts", "data `directory` of mcpsts serve --dev")
	cmd.MarkFlagsMutuallyExclusive("config", "data")
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the signing keys and their lifecycle",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withKeys(cmd.Context(), f, e, cmd.ErrOrStderr(), func(_ *config.Config, iss *issuer.Issuer) error {
				keys, err := iss.Keys(cmd.Context())
				if err != nil {
					return err
				}
				printKeys(cmd.OutOrStdout(), keys)
				return nil
			})
		},
	}, &cobra.Command{
		Use:   "rotate",
		Short: "Make a new signing key now; it signs after the publication lead",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withKeys(cmd.Context(), f, e, cmd.ErrOrStderr(), func(cfg *config.Config, iss *issuer.Issuer) error {
				res, err := iss.Rotate(cmd.Context(), true)
				if aerr := auditRotation(cfg, e, res, err); aerr != nil {
					return errors.Join(err, aerr)
				}
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if res.Added != "" {
					fmt.Fprintf(out, "added key %s: published now, signs from %s\n", res.Added, res.ActivatesAt.UTC().Format(time.RFC3339))
				} else {
					fmt.Fprintf(out, "key %s is already pending; no new key made\n", res.Pending)
				}
				for _, kid := range res.Removed {
					fmt.Fprintf(out, "removed expired key %s\n", kid)
				}
				return nil
			})
		},
	})
	return cmd
}

// withKeys opens the store and an issuer over it (not started) and runs fn.
func withKeys(ctx context.Context, f keysFlags, e env, stderr io.Writer, fn func(*config.Config, *issuer.Issuer) error) error {
	cfg, dev, st, err := openStore(ctx, f, e)
	if err != nil {
		return err
	}
	defer st.Close()
	issuerURL := cfg.Issuer
	if dev {
		issuerURL = "https://localhost" // not used: keys are the same for any issuer
	}
	iss, err := broker.NewIssuer(ctx, broker.IssuerSetup{Config: cfg, Dev: dev, URL: issuerURL, Store: st, Getenv: e.getenv, Now: e.now, Log: newLogger(stderr, cfg.Log)})
	if err != nil {
		return err
	}
	return fn(cfg, iss)
}

// auditRotation appends a rotation made from the command line to the
// audit log.
func auditRotation(cfg *config.Config, e env, res issuer.RotationResult, rotErr error) error {
	result := "ok"
	if rotErr != nil {
		result = "failed"
	}
	return auditCLI(cfg, e, issuer.OperationRotate, issuer.OperationRotate, result,
		attribute.String("mcpsts.keys.added", res.Added), attribute.StringSlice("mcpsts.keys.removed", res.Removed))
}

// auditCLI appends an administrative change made from the command line to
// the audit log (none when audit.file is off), naming the operating-system
// user who made it as the principal.
func auditCLI(cfg *config.Config, e env, event, operation, result string, attrs ...attribute.KeyValue) error {
	path := cfg.AuditFile()
	if path == "" {
		return nil
	}
	l, err := auditlog.OpenWith(path, cfg.AuditOptions(e.now, nil))
	if err != nil {
		return fmt.Errorf("audit.file: %w", err)
	}
	who := "unknown"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	host, _ := os.Hostname()
	l.Append(auditlog.Event{Name: event, Attrs: append([]attribute.KeyValue{
		attribute.String(admin.AttrOperation, operation), attribute.String(admin.AttrPrincipal, "cli:"+who+"@"+host),
		attribute.String(admin.AttrResult, result)}, attrs...)})
	return l.Close()
}

// openStore opens the store of a --config file, or of the --dev data
// directory, which must exist; dev reports which.
func openStore(ctx context.Context, f keysFlags, e env) (cfg *config.Config, dev bool, st *store.Store, err error) {
	dev = f.config == ""
	if dev {
		if _, err := os.Stat(f.data); errors.Is(err, fs.ErrNotExist) {
			return nil, false, nil, fmt.Errorf("data directory %s does not exist: start mcpsts serve --dev first, or pass --data or --config", f.data)
		}
		cfg = devConfig(f.data, "127.0.0.1:0")
	} else if cfg, err = config.Load(f.config, e.getenv, e.now()); err != nil {
		return nil, false, nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	if st, err = store.Open(ctx, cfg.StoreURL()); err != nil {
		return nil, false, nil, err
	}
	return cfg, dev, st, nil
}

func printKeys(w io.Writer, keys []issuer.KeyStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tBACKEND\tSTATE\tCREATED\tSIGNS FROM\tRETIRED\tREMOVED AFTER")
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Algorithm, k.Backend, k.State,
			ts(k.CreatedAt), ts(k.ActivateAt), ts(k.RetiredAt), ts(k.RemoveAt))
	}
	tw.Flush()
}
