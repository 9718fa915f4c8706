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
	"syscall"
	"time"

	"github.com/spf13/cobra"
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
	root.AddCommand(newServeCommand(e), newTokenCommand(e), newKeysCommand(e), newTrustmapCommand(e), newConsentCommand(e), newTokensCommand(e), newAuditCommand(), newGatewayCommand(e), newVersionCommand())
	return root
}
