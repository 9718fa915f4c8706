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
inserted or reordered line is reported with its line number. When the log
was rotated (FILE.<time>, FILE.<time>.gz beside it), every file is checked
in order, and that each continues the one before: a missing, reordered or
replaced file is named. It prints the number of lines and the last hash;
keep that hash elsewhere to detect lines removed from the end later.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if files, err := auditlog.Files(args[0]); err == nil && len(files) > 1 {
				return verifySet(cmd, args[0])
			}
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

// verifySet verifies a rotated log and prints a line per file.
func verifySet(cmd *cobra.Command, path string) error {
	files, last, err := auditlog.VerifySet(path)
	out := cmd.OutOrStdout()
	total := 0
	for _, f := range files {
		total += f.Lines
		note := ""
		if f.ContinuesMissing != "" {
			note = " (continues " + f.ContinuesMissing + ", no longer kept)"
		}
		fmt.Fprintf(out, "%s: %d lines, seq %d to %d%s\n", f.Name, f.Lines, f.FirstSeq, f.Seq, note)
	}
	var be *auditlog.BreakError
	if errors.As(err, &be) {
		return fmt.Errorf("%s: the chain is broken at %w", path, err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: %d files, %d lines, chain intact; last hash %s\n", path, len(files), total, last)
	return nil
}
