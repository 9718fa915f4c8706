package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/consent"
)

func newConsentCommand(e env) *cobra.Command {
	var f keysFlags // the same store selection as keys
	cmd := &cobra.Command{
		Use:   "consent",
		Short: "Grant, list and revoke users' consents to MCP clients",
		Long: `Manage the per-client consent registry in the store of a --config file, or of
the --dev data directory (--data). Every replica sees a change on its next
token request.`,
	}
	cmd.PersistentFlags().StringVar(&f.config, "config", "", "YAML configuration `file` (else the --dev data directory)")
	cmd.PersistentFlags().StringVar(&f.data, "data", ".mcpsts", "data `directory` of mcpsts serve --dev")
	cmd.MarkFlagsMutuallyExclusive("config", "data")

	var c consent.Consent
	var ttl time.Duration
	grant := &cobra.Command{
		Use:   "grant --provider P --user U --client C --resource URI [--scope S…] [--ttl D]",
		Short: "Record that a user consents to a client",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withConsents(cmd.Context(), f, e, func(s consent.Store) error {
				for i, r := range c.Resources {
					canon, err := trustmaps.CanonicalResource(r)
					if err != nil {
						return fmt.Errorf("--resource: %v", err)
					}
					c.Resources[i] = canon
				}
				c.ExpiresAt = e.now().Add(ttl)
				if err := consent.Validate(c, e.now()); err != nil {
					return err
				}
				got, err := s.GrantConsent(cmd.Context(), c)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "granted consent %s, until %s\n", got.ID, got.ExpiresAt.Format(time.RFC3339))
				return nil
			})
		},
	}
	gf := grant.Flags()
	gf.StringVar(&c.Provider, "provider", "", "the user provider")
	gf.StringVar(&c.User, "user", "", "the user's subject")
	gf.StringVar(&c.ClientID, "client", "", "the MCP client")
	gf.StringArrayVar(&c.Scopes, "scope", nil, "a scope consented to (repeatable)")
	gf.StringArrayVar(&c.Resources, "resource", nil, "an MCP server resource URI (repeatable)")
	gf.DurationVar(&ttl, "ttl", 90*24*time.Hour, "how long the consent lasts")

	var provider, user, client string
	list := &cobra.Command{
		Use:   "list [--provider P] [--user U] [--client C]",
		Short: "List consents",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withConsents(cmd.Context(), f, e, func(s consent.Store) error {
				cs, err := s.Consents(cmd.Context(), provider, user, client)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tPROVIDER\tUSER\tCLIENT\tSCOPES\tRESOURCES\tEXPIRES\tSTATE")
				for _, c := range cs {
					state := "active"
					switch {
					case !c.RevokedAt.IsZero():
						state = "revoked"
					case !c.Active(e.now()):
						state = "expired"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%v\t%s\t%s\n", c.ID, c.Provider, c.User, c.ClientID, c.Scopes, c.Resources, c.ExpiresAt.Format(time.RFC3339), state)
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&provider, "provider", "", "only this provider's users")
	list.Flags().StringVar(&user, "user", "", "only this user")
	list.Flags().StringVar(&client, "client", "", "only this client")

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a consent; it stops counting on the next request",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withConsents(cmd.Context(), f, e, func(s consent.Store) error {
				if err := s.RevokeConsent(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked consent %s\n", args[0])
				return nil
			})
		},
	}
	cmd.AddCommand(grant, list, revoke)
	return cmd
}

// withConsents opens the store of the configuration or dev data directory.
func withConsents(ctx context.Context, f keysFlags, e env, fn func(consent.Store) error) error {
	_, _, st, err := openStore(ctx, f, e)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st)
}
