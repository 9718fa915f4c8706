// Command mcpsts is the mcpsts security token service: the server, and the
// tools that agents and operators run against it.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/agext/levenshtein"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// env is what the commands take from the process, so that tests can give
// their own.
type env struct {
	getenv func(string) string
	now    func() time.Time
	// listener, when set, gives serve an already bound listener for its
	// listen address (tests bind the port before writing the issuer URL
	// that names it); nil: serve binds the address itself.
	listener func(addr string) net.Listener
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCommand(env{getenv: os.Getenv, now: time.Now})
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "mcpsts:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

func newRootCommand(e env) *cobra.Command {
	root := &cobra.Command{
		Use:           "mcpsts",
		Short:         "A security token service for MCP: short-lived, audience-bound tokens for workloads, without static secrets",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(newServeCommand(e), newTokenCommand(e), newKeysCommand(e), newTrustmapCommand(e), newToolPolicyCommand(e), newConsentCommand(e), newTokensCommand(e), newAuditCommand(), newGatewayCommand(e), newVersionCommand())
	return root
}

// usageError is a command line that cannot run as given: exit status 2
// (exitConfig), the message, then the command's usage.
func usageError(cmd *cobra.Command, err error) error {
	return &exitError{exitConfig, fmt.Errorf("%w\n\n%s", err, strings.TrimRight(cmd.UsageString(), "\n"))}
}

// flagError is every command's answer to a flag it cannot parse: a usage
// error, with the flag probably meant when one is near the unknown one.
func flagError(cmd *cobra.Command, err error) error {
	name, unknown := strings.CutPrefix(err.Error(), "unknown flag: --")
	if !unknown {
		return usageError(cmd, err)
	}
	best, bestD := "", 3
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if d := levenshtein.Distance(name, f.Name, nil); d < bestD && !f.Hidden {
			best, bestD = f.Name, d
		}
	})
	if best != "" {
		err = fmt.Errorf("%w (did you mean --%s?)", err, best)
	}
	return usageError(cmd, err)
}
