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
	var start auditlog.Start
	verify := &cobra.Command{
		Use:   "verify FILE [--from-seq N [--expect-hash H]]",
		Short: "Verify the audit log's chain and name the first broken line",
		Long: `Verify reads an audit log written by mcpsts serve (audit.file) and checks
that every line is intact and follows the one before it: an edited, deleted,
inserted or reordered line is reported with its line number. When the log
was rotated (FILE.<time>, FILE.<time>.gz beside it), every file is checked
in order, and that each continues the one before: a missing, reordered or
replaced file is named. The chain must start at the genesis: a log whose
oldest lines are gone is broken, unless max_files removed them (the lock
file FILE.lock then records where the kept log begins, and verify starts
there) or --from-seq says where the kept log begins and, better,
--expect-hash gives the hash of the line before it, kept elsewhere. It prints the first seq, the
number of lines and the last hash; keep that hash elsewhere to detect lines
removed from the end later.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if start.Prev != "" && start.Seq == 0 {
				return usageError(cmd, errors.New("--expect-hash goes with --from-seq"))
			}
			if start.Seq == 0 {
				// Where max_files left the kept log, as the writers
				// recorded it: a file removed beyond it is found.
				kept, ok, err := auditlog.Retained(args[0])
				if err != nil {
					return err
				}
				if ok {
					start = kept
					fmt.Fprintf(cmd.OutOrStdout(), "%s.lock: the kept log begins at seq %d (older files were removed under max_files)\n", args[0], kept.Seq)
				}
			}
			if files, err := auditlog.Files(args[0]); err == nil && len(files) > 1 {
				return verifySet(cmd, args[0], start)
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			n, last, err := auditlog.Verify(f, start)
			var be *auditlog.BreakError
			if errors.As(err, &be) {
				return fmt.Errorf("%s: the chain is broken at %w", args[0], err)
			}
			if err != nil {
				return err
			}
			first := max(start.Seq, 1)
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d lines from seq %d, chain intact; last hash %s\n", args[0], n, first, last)
			return nil
		},
	}
	verify.Flags().Int64Var(&start.Seq, "from-seq", 0, "the `seq` the kept log begins at (older files removed under max_files); default: the genesis, seq 1")
	verify.Flags().StringVar(&start.Prev, "expect-hash", "", "with --from-seq: the `hash` of the line before it, kept elsewhere")
	cmd.AddCommand(verify)
	return cmd
}

// verifySet verifies a rotated log and prints a line per file.
func verifySet(cmd *cobra.Command, path string, start auditlog.Start) error {
	files, last, err := auditlog.VerifySet(path, start)
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
