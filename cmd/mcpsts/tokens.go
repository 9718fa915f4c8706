package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/attribute"

	"github.com/mcpsts/mcpsts/internal/admin"
)

func newTokensCommand(e env) *cobra.Command {
	var f keysFlags // the same store selection as keys
	cmd := &cobra.Command{
		Use:   "tokens",
		Short: "Revoke access tokens",
		Long: `Revoke access tokens in the store of a --config file, or of the --dev data
directory (--data): every replica refuses them from its next check
(introspection, and MCP servers that check revocation). The same as POST
/admin/v1/revocations; recorded in the audit log.`,
	}
	cmd.PersistentFlags().StringVar(&f.config, "config", "", "YAML configuration `file` (else the --dev data directory)")
	cmd.PersistentFlags().StringVar(&f.data, "data", ".mcpsts", "data `directory` of mcpsts serve --dev")
	cmd.MarkFlagsMutuallyExclusive("config", "data")
	var rev admin.Revocation
	revoke := &cobra.Command{
		Use:   "revoke (--jti ID | --subject SUB | --client CLIENT_ID)",
		Short: "Revoke one token, or every token of a subject or a client issued until now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kind, value, err := rev.Kind()
			if err != nil {
				return &exitError{exitConfig, fmt.Errorf("--jti, --subject, --client: %w", err)}
			}
			cfg, _, st, err := openStore(cmd.Context(), f, e)
			if err != nil {
				return err
			}
			defer st.Close()
			now := e.now()
			if err := st.Revoke(cmd.Context(), kind, value, now, now.Add(cfg.Tokens.MaxTTL)); err != nil {
				return err
			}
			if err := auditCLI(cfg, e, "admin.token.revoke", "token.revoke", "ok", attribute.String(admin.AttrTarget, kind+":"+value)); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s %s: refused from every replica's next check, kept %s\n", kind, value, cfg.Tokens.MaxTTL)
			return nil
		},
	}
	rf := revoke.Flags()
	rf.StringVar(&rev.JTI, "jti", "", "one token's jti")
	rf.StringVar(&rev.Subject, "subject", "", "every token of this sub (workload:PROVIDER/SUBJECT, or a user)")
	rf.StringVar(&rev.Client, "client", "", "every token of this client_id")
	cmd.AddCommand(revoke)
	return cmd
}
