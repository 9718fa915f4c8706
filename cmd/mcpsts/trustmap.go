package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/internal/auditlog"
	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/internal/geoip"
	"github.com/mcpsts/mcpsts/internal/mapfiles"
	broker "github.com/mcpsts/mcpsts/internal/server"
	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/impact"
)

func newTrustmapCommand(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trustmap",
		Short: "Check trust maps and explain their decisions, offline",
	}
	cmd.PersistentFlags().String("geoip", "", "MaxMind-format geolocation database `file` (maps that use geolocation need one)")
	var checkConfig, checkData string
	check := &cobra.Command{
		Use:   "check [FILE|DIR…] [--config FILE | --data DIR]",
		Short: "Compile trust maps and report every problem",
		Long: `Compile trust maps and report every problem at once, each with its file,
line, map and field. Given the configuration (--config) or serve --dev's
data directory (--data), a map that names a provider it does not define is a
problem too: it would compile and never match. (Providers added through the
admin API are not in the file: the server logs such a map at each reload.)
With --data and no FILE, the maps checked are DIR/trustmaps.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0 && checkData != "":
				args = []string{filepath.Join(checkData, "trustmaps")}
			case len(args) == 0:
				return usageError(cmd, errors.New("name the trust map files or directories to check (or --data DIR)"))
			}
			eng, err := compileFiles(cmd, args)
			if err != nil {
				return err
			}
			var known []string
			switch {
			case checkConfig != "" && checkData != "":
				return errors.New("--config or --data, not both")
			case checkConfig != "":
				cfg, err := config.Load(checkConfig, e.getenv, e.now())
				if err != nil {
					return err
				}
				known = cfg.ProviderNames()
			case checkData != "":
				known = []string{config.DevProvider, broker.DevLoginProvider}
			}
			if known != nil {
				if err := errors.Join(eng.UnknownProviders(known)...); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d trust maps compile\n", eng.Len())
			return nil
		},
	}
	check.Flags().StringVar(&checkConfig, "config", "", "YAML configuration `file`: the providers the maps may name")
	check.Flags().StringVar(&checkData, "data", "", "data `directory` of mcpsts serve --dev: its providers (dev, dev-login)")
	cmd.AddCommand(check)
	var identityFile, provider, subject, audience, sourceIP, at, grantType, clientID, authServer string
	var scopes []string
	var mtls, asJSON bool
	var contextFile string
	explain := &cobra.Command{
		Use:   "explain FILE|DIR… --identity FILE --audience URI [--scope S…]",
		Short: "Say which map grants a request, or why none does",
		Long: `Evaluate a request against trust maps and print the trace: the decision (map,
client, audience, scopes, lifetime) or the denial's reason, every map of the
identity's provider, each condition's value, and why a map did or did not
decide. --json prints it as JSON (snake_case names, the admin API's form). The identity file is JSON: {"provider": …, "subject": …,
"issuer": …, "kind": …, "attributes": {…}}. The context file is JSON of the
posture attributes by source, as conditions read them ({"edr": {"compliant":
true, "score": 80}}); with --geoip, the trace gives the place of --source-ip.
The exit status is 0 for a grant, 1 for a denial.`,
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
			var postureContext map[string]any
			if contextFile != "" {
				raw, err := os.ReadFile(contextFile)
				if err != nil {
					return fmt.Errorf("--context: %w", err)
				}
				if err := json.Unmarshal(raw, &postureContext); err != nil {
					return fmt.Errorf("--context %s: want a JSON object of attributes by posture source: %v", contextFile, err)
				}
			}
			tr := eng.Explain(cmd.Context(), id, trustmaps.Request{
				Audience: audience, Scopes: scopes, GrantType: grantType, SourceIP: sourceIP, MTLS: mtls, Time: when,
				ClientID: clientID, AuthorizationServer: authServer, Context: postureContext,
			})
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				enc.Encode(tr)
			} else if err := tr.WriteText(cmd.OutOrStdout()); err != nil {
				return err
			}
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
	fl.BoolVar(&asJSON, "json", false, "print the trace as JSON")
	fl.StringVar(&contextFile, "context", "", "JSON `file` of posture attributes by source (context.<source> in conditions)")
	fl.StringVar(&clientID, "client-id", "", "the client the request is for (a person's client: browser flows, ID-JAGs); CEL's request.client_id")
	fl.StringVar(&authServer, "authorization-server", "", "explain an ID-JAG request (SEP-990) naming this authorization server's issuer")
	explain.MarkFlagRequired("audience")
	cmd.AddCommand(explain, newImpactCommand(e))
	return cmd
}

// newImpactCommand is `mcpsts trustmap impact`: the blast radius of a
// change of the maps, from the decisions the audit log recorded.
func newImpactCommand(e env) *cobra.Command {
	var audits, maps []string
	var since time.Duration
	var format string
	var fromStore bool
	var kf keysFlags
	cmd := &cobra.Command{
		Use:   "impact --audit FILE… --maps DIR|FILE… [--since 168h] [--format text|json|markdown] [--current-from-store]",
		Short: "Replay recorded decisions against proposed trust maps: who gains and who loses access",
		Long: `Compile the proposed maps and decide again every decision the audit logs
recorded (with what a replay needs) in the window, at its recorded time. The
report groups and counts the identities that lose access, gain access, or
get another client, scopes, lifetime, binding or map, with one example trace
ID each. "Before" is the recorded outcome, or with --current-from-store the
decision of the store's current maps (--config or --data say which store).
Exit status: 0 when nothing changes, 2 when access changes, 1 on errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(audits) == 0 || len(maps) == 0 {
				return errors.New("--audit and --maps are required")
			}
			after, err := compileFiles(cmd, maps)
			if err != nil {
				return fmt.Errorf("--maps: %w", err)
			}
			opt := impact.Options{}
			if since > 0 {
				opt.Since = e.now().Add(-since)
			}
			if fromStore {
				_, _, st, err := openStore(cmd.Context(), kf, e)
				if err != nil {
					return err
				}
				docs, err := trustmaps.RepositorySource{Repo: st}.Documents(cmd.Context())
				st.Close()
				if err != nil {
					return err
				}
				opts, err := compileOptions(cmd)
				if err != nil {
					return err
				}
				if opt.Before, err = opts.Compile(docs...); err != nil {
					return fmt.Errorf("the store's maps: %w", err)
				}
			}
			var files []io.Closer
			defer func() {
				for _, f := range files {
					f.Close()
				}
			}()
			var readers []io.Reader
			for _, path := range audits {
				f, err := auditlog.OpenSet(path) // with its rotated files
				if err != nil {
					return fmt.Errorf("--audit: %w", err)
				}
				files = append(files, f)
				readers = append(readers, f)
			}
			records := func(yield func(impact.Record, error) bool) {
				for i, r := range readers {
					for rec, err := range auditlog.Records(r) {
						if err != nil {
							err = fmt.Errorf("%s: %w", audits[i], err)
						}
						if !yield(rec, err) || err != nil {
							return
						}
					}
				}
			}
			rep, err := impact.Replay(cmd.Context(), records, after, opt)
			if err != nil {
				return err
			}
			if err := rep.Write(cmd.OutOrStdout(), format); err != nil {
				return err
			}
			if rep.AccessChanges() {
				return &exitError{code: 2, err: errors.New("the proposed maps change access")}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&audits, "audit", nil, "audit log `file` (repeatable: one per replica)")
	fl.StringArrayVar(&maps, "maps", nil, "the proposed trust maps: a `file` or directory (repeatable)")
	fl.DurationVar(&since, "since", 168*time.Hour, "replay the decisions of this last `duration` (0: all)")
	fl.StringVar(&format, "format", "text", "text, json or markdown")
	fl.BoolVar(&fromStore, "current-from-store", false, "decide the before side with the store's current maps instead of the recorded outcomes")
	fl.StringVar(&kf.config, "config", "", "YAML configuration `file` naming the store (with --current-from-store)")
	fl.StringVar(&kf.data, "data", ".mcpsts", "data `directory` of mcpsts serve --dev (with --current-from-store)")
	return cmd
}

// compileOptions are the options of --geoip.
func compileOptions(cmd *cobra.Command) (trustmaps.Options, error) {
	var opts trustmaps.Options
	if path, _ := cmd.Flags().GetString("geoip"); path != "" {
		db, err := geoip.Open(path, nil)
		if err != nil {
			return opts, fmt.Errorf("--geoip: %w", err)
		}
		opts.Places = db
	}
	return opts, nil
}

// errDenied is explain's non-zero exit for a denial, after the trace.
var errDenied = errors.New("denied")

func compileFiles(cmd *cobra.Command, paths []string) (*trustmaps.Engine, error) {
	docs, err := mapfiles.Files(paths).Documents(cmd.Context())
	if err != nil {
		return nil, err
	}
	opts, err := compileOptions(cmd)
	if err != nil {
		return nil, err
	}
	eng, err := opts.Compile(docs...)
	if err != nil {
		return nil, err
	}
	return eng, nil
}
