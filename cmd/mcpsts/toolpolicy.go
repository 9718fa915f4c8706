package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mcpsts/mcpsts/internal/mapfiles"
	"github.com/mcpsts/mcpsts/resource"
	"github.com/mcpsts/mcpsts/toolpolicy"
)

func newToolPolicyCommand(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "toolpolicy",
		Short: "Check tool policies and explain their decisions (docs/tool-policies.md)",
	}
	check := &cobra.Command{
		Use:   "check FILE|DIR…",
		Short: "Compile tool policies and report every problem",
		Long: `Compile tool policies (YAML files, or directories of them) and report every
problem at once, each with its file, line and field. Exit status 2 when any.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError(cmd, errors.New("name the tool policy files or directories to check"))
			}
			p, err := compilePolicies(cmd, args)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tool policies for %d servers compile: %s\n", len(p.Servers()), strings.Join(p.Servers(), ", "))
			return nil
		},
	}
	var server, tool, argsJSON, callerFile string
	var asJSON bool
	explain := &cobra.Command{
		Use:   "explain FILE|DIR… --server URI --tool NAME [--args JSON] --caller FILE [--json]",
		Short: "Decide one tool call and show each rule read",
		Long: `Decide one tool call under the policies of --server, as the edges do, and
show the decision and each rule read with its outcome. The caller is a JSON
file: {"subject": "user:corp/alice", "client_id": "desktop", "scopes": [...],
"claims": {...}, "act": [{"sub": "...", "client_id": "..."}]}; --args the
call's arguments as a JSON object. Exit status 0 when the call is allowed,
4 when it is denied or must step up.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				return usageError(cmd, errors.New("name the tool policy files or directories"))
			case server == "" || tool == "" || callerFile == "":
				return usageError(cmd, errors.New("--server, --tool and --caller are required"))
			}
			p, err := compilePolicies(cmd, args)
			if err != nil {
				return err
			}
			s := p.For(server)
			if s == nil {
				return &exitError{exitConfig, fmt.Errorf("no policy for %s (policies for: %s)", server, strings.Join(p.Servers(), ", "))}
			}
			var call toolpolicy.Call
			call.Tool, call.Time = tool, e.now()
			if argsJSON != "" {
				if call.Args, err = resource.ParseArguments([]byte(argsJSON)); err != nil {
					return usageError(cmd, fmt.Errorf("--args: %v", err))
				}
			}
			data, err := os.ReadFile(callerFile)
			if err != nil {
				return &exitError{exitConfig, err}
			}
			var c struct {
				Subject  string         `json:"subject"`
				ClientID string         `json:"client_id"`
				Scopes   []string       `json:"scopes"`
				Claims   map[string]any `json:"claims"`
				Act      []struct {
					Sub      string `json:"sub"`
					ClientID string `json:"client_id"`
				} `json:"act"`
			}
			dec := json.NewDecoder(strings.NewReader(string(data)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&c); err != nil {
				return &exitError{exitConfig, fmt.Errorf("%s: %v", callerFile, err)}
			}
			call.Caller = toolpolicy.Caller{Subject: c.Subject, ClientID: c.ClientID, Scopes: c.Scopes, Claims: c.Claims}
			for _, a := range c.Act {
				call.Caller.Act = append(call.Caller.Act, toolpolicy.Actor{Subject: a.Sub, ClientID: a.ClientID})
			}
			d := s.Decide(cmd.Context(), call)
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				enc.Encode(map[string]any{"effect": d.Effect, "rule": d.Rule, "reason": d.Reason, "scopes": d.Scopes, "trace": d.Trace})
			} else {
				fmt.Fprintf(out, "%s %s for %s: %s", server, tool, call.Caller.Subject, d.Effect)
				if d.Rule != "" {
					fmt.Fprintf(out, " (rule %s)", d.Rule)
				}
				fmt.Fprintln(out)
				if d.Reason != "" {
					fmt.Fprintf(out, "  reason: %s\n", d.Reason)
				}
				if len(d.Scopes) > 0 {
					fmt.Fprintf(out, "  step up to: %s\n", strings.Join(d.Scopes, " "))
				}
				for _, st := range d.Trace {
					fmt.Fprintf(out, "  rule %s: %s\n", st.Rule, st.Outcome)
				}
			}
			if d.Effect != toolpolicy.Allow {
				return &exitError{exitDenied, errors.New("the call is not allowed")}
			}
			return nil
		},
	}
	explain.Flags().StringVar(&server, "server", "", "the MCP server's resource `URI`")
	explain.Flags().StringVar(&tool, "tool", "", "the tool's `name`")
	explain.Flags().StringVar(&argsJSON, "args", "", "the call's arguments, a JSON `object`")
	explain.Flags().StringVar(&callerFile, "caller", "", "a JSON `file`: subject, client_id, scopes, claims, act")
	explain.Flags().BoolVar(&asJSON, "json", false, "print the decision as JSON")
	cmd.AddCommand(check, explain)
	return cmd
}

// compilePolicies compiles the policy files under paths; a problem exits 2.
func compilePolicies(cmd *cobra.Command, paths []string) (*toolpolicy.Policies, error) {
	docs, err := mapfiles.Files(paths).Documents(cmd.Context())
	if err != nil {
		return nil, &exitError{exitConfig, err}
	}
	var tdocs []toolpolicy.Document
	for _, d := range docs {
		tdocs = append(tdocs, toolpolicy.Document{Name: d.Name, Data: d.Data})
	}
	p, err := toolpolicy.Compile(tdocs...)
	if err != nil {
		return nil, &exitError{exitConfig, err}
	}
	return p, nil
}
