package mutation

import (
	"os"
	"path/filepath"
	"slices"
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

// TestGuards: every mutant has one guard, a test of a package its own
// pattern names (a mutant is caught by its own package's tests), and every
// guard is of a mutant.
func TestGuards(t *testing.T) {
	seen := map[string]int{}
	for _, g := range guards {
		seen[g.mutant]++
		i := slices.IndexFunc(mutants, func(m mutant) bool { return m.name == g.mutant })
		if i < 0 {
			t.Errorf("the guard of %q: no such mutant", g.mutant)
			continue
		}
		fields := strings.Fields(mutants[i].pkg)
		pattern := fields[len(fields)-1]
		if !strings.HasPrefix(g.test, "Test") || !(g.pkg == pattern || strings.HasSuffix(pattern, "/...") && (g.pkg == strings.TrimSuffix(pattern, "/...") || strings.HasPrefix(g.pkg, strings.TrimSuffix(pattern, "...")))) {
			t.Errorf("%s: guard %s in %s is not a test of %s", g.mutant, g.test, g.pkg, pattern)
		}
	}
	for _, m := range mutants {
		if seen[m.name] != 1 {
			t.Errorf("%s has %d guards, want 1", m.name, seen[m.name])
		}
	}
}
