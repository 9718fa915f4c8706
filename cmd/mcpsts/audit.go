package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mcpsts/mcpsts/internal/auditlog"
)

func newAuditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Check the hash-chained audit log",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "verify FILE",
		Short: "Verify the audit log's chain and name the first broken line",
		Long: `Verify reads an audit log written by mcpsts serve (audit.file) and checks
that every line is intact and follows the one before it: an edited, deleted,
inserted or reordered line is reported with its line number. It prints the
number of lines and the last hash; keep that hash elsewhere to detect lines
removed from the end later.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			n, last, err := auditlog.Verify(f)
			var be *auditlog.BreakError
			if errors.As(err, &be) {
				return fmt.Errorf("%s: the chain is broken at %w", args[0], err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d lines, chain intact; last hash %s\n", args[0], n, last)
			return nil
		},
	})
	return cmd
}
