package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/internal/mapfiles"
	"github.com/mcpsts/mcpsts/trustmaps"
)

func newTrustmapCommand(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trustmap",
		Short: "Check trust maps and explain their decisions, offline",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check FILE|DIR…",
		Short: "Compile trust maps and report every problem",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, err := compileFiles(cmd, args)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d trust maps compile\n", eng.Len())
			return nil
		},
	})
	var identityFile, provider, subject, audience, sourceIP, at, grantType, clientID, authServer string
	var scopes []string
	var mtls bool
	explain := &cobra.Command{
		Use:   "explain FILE|DIR… --identity FILE --audience URI [--scope S…]",
		Short: "Say which map grants a request, or why none does",
		Long: `Evaluate a request against trust maps and print the trace as JSON: every map
of the identity's provider, each condition's value, and why a map did or did
not decide. The identity file is JSON: {"provider": …, "subject": …,
"issuer": …, "kind": …, "attributes": {…}}. The exit status is 0 for a grant,
1 for a denial.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, err := compileFiles(cmd, args)
			if err != nil {
				return err
			}
			var id attest.Identity
			switch {
			case identityFile != "" && (provider != "" || subject != ""):
				return errors.New("--identity or --provider and --subject, not both")
			case identityFile != "":
				raw, err := os.ReadFile(identityFile)
				if err != nil {
					return fmt.Errorf("--identity: %w", err)
				}
				if err := json.Unmarshal(raw, &id); err != nil {
					return fmt.Errorf("--identity %s: %v", identityFile, err)
				}
			case provider != "" && subject != "":
				id = attest.Identity{Provider: provider, Subject: subject}
			default:
				return errors.New(`required flag "identity" not set: give --identity FILE, or --provider and --subject`)
			}
			if sourceIP != "" {
				if _, err := netip.ParseAddr(sourceIP); err != nil {
					return fmt.Errorf("--source-ip: %v", err)
				}
			}
			when := e.now()
			if at != "" {
				if when, err = time.Parse(time.RFC3339, at); err != nil {
					return fmt.Errorf("--time: want RFC 3339, e.g. 2026-11-23T10:00:00+01:00")
				}
			}
			tr := eng.Explain(cmd.Context(), id, trustmaps.Request{
				Audience: audience, Scopes: scopes, GrantType: grantType, SourceIP: sourceIP, MTLS: mtls, Time: when,
				ClientID: clientID, AuthorizationServer: authServer,
			})
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			enc.Encode(tr)
			if tr.Decision == nil {
				return errDenied
			}
			return nil
		},
	}
	fl := explain.Flags()
	fl.StringVar(&identityFile, "identity", "", "JSON `file` of the verified identity (provider, subject, attributes…)")
	fl.StringVar(&provider, "provider", "", "the identity's provider (with --subject, for an identity without attributes)")
	fl.StringVar(&subject, "subject", "", "the identity's subject (with --provider)")
	fl.StringVar(&audience, "audience", "", "requested audience (MCP server resource URI)")
	fl.StringArrayVar(&scopes, "scope", nil, "requested scope (repeatable; none: the map's defaults)")
	fl.StringVar(&sourceIP, "source-ip", "", "the client's IP address")
	fl.StringVar(&at, "time", "", "the request time, RFC 3339 (default now)")
	fl.StringVar(&grantType, "grant-type", "urn:ietf:params:oauth:grant-type:token-exchange", "the grant type")
	fl.BoolVar(&mtls, "mtls", false, "the client proved a certificate over TLS")
	fl.StringVar(&clientID, "client-id", "", "the client the request is for (a person's client: browser flows, ID-JAGs); CEL's request.client_id")
	fl.StringVar(&authServer, "authorization-server", "", "explain an ID-JAG request (SEP-990) naming this authorization server's issuer")
	explain.MarkFlagRequired("audience")
	cmd.AddCommand(explain)
	return cmd
}

// errDenied is explain's non-zero exit for a denial, after the trace.
var errDenied = errors.New("denied")

func compileFiles(cmd *cobra.Command, paths []string) (*trustmaps.Engine, error) {
	docs, err := mapfiles.Files(paths).Documents(cmd.Context())
	if err != nil {
		return nil, err
	}
	eng, err := trustmaps.Compile(docs...)
	if err != nil {
		return nil, err
	}
	return eng, nil
}
