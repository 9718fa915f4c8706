package mutation

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMutantsApply: every mutant's text stands once in its file, so that
// the check cannot silently stop mutating (this runs in every go test; the
// mutants themselves run with MCPSTS_MUTATION=1).
func TestMutantsApply(t *testing.T) {
	for _, m := range mutants {
		src, err := os.ReadFile(filepath.Join("..", "..", m.file))
		if err != nil {
			t.Errorf("%s: %v", m.name, err)
			continue
		}
		if n := strings.Count(string(src), m.from); n != 1 {
			t.Errorf("%s: %s holds the mutated text %d times, want once", m.name, m.file, n)
		}
	}
}

// TestEquivalentMutantsNamed: every mutant recorded as equivalent says
// why, and is not also in the table that must fail.
func TestEquivalentMutantsNamed(t *testing.T) {
	for _, e := range equivalent {
		if e.why == "" || e.file == "" {
			t.Errorf("%s: an equivalent mutant needs its file and why", e.name)
		}
		for _, m := range mutants {
			if m.name == e.name {
				t.Errorf("%s is both equivalent and a mutant that must fail", e.name)
			}
		}
	}
}
