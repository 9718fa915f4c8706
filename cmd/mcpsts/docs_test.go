package main

import (
	"fmt"
	"go/parser"
	"go/token"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/internal/mdblocks"
	"github.com/mcpsts/mcpsts/toolpolicy"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// TestDocsExamples (issue 38): every example of README.md and docs/ is
// checked against what we ship, so that none drifts: a YAML block is a
// trust map that compiles or a configuration that decodes (no unknown or
// misspelt key, no value of the wrong type); every mcpsts command line of
// a shell block names a command that exists and only its flags; every go
// test line names a package that exists and benchmarks or tests it has; a
// tool policy compiles;
// the Go block parses. (README's first-token output blocks are compared
// with real output by TestFirstTokenWalkthrough.)
func TestDocsExamples(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	files = append(files, filepath.Join("..", "..", "README.md"))
	root := newRootCommand(testEnv(nil))
	checked := map[string]int{}
	for _, file := range files {
		blocks, err := mdblocks.Read(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blocks {
			var problems []string
			switch b.Lang {
			case "yaml":
				problems = yamlExample(b)
			case "sh":
				problems = shellExample(root, b)
			case "go":
				problems = goExample(b)
			default:
				continue
			}
			checked[b.Lang]++
			for _, p := range problems {
				t.Errorf("%s: %s", b, p)
			}
		}
	}
	if checked["yaml"] < 14 || checked["sh"] < 25 || checked["go"] < 1 {
		t.Fatalf("checked %v: fewer examples than the documentation holds; is the reader broken?", checked)
	}
	// The configuration reference's tables name keys that exist.
	known := map[string]bool{}
	configPaths(reflect.TypeOf(config.Config{}), "", known)
	rows := 0
	for file, prefix := range map[string]string{"configuration.md": "", "people.md": "", "providers.md": "providers[]."} {
		data, err := os.ReadFile(filepath.Join("..", "..", "docs", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range regexp.MustCompile("(?m)^\\| (`[a-z_.\\[\\]]+`(?:, `[a-z_.\\[\\]]+`)*) \\|").FindAllStringSubmatch(string(data), -1) {
			parent := ""
			for _, name := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(row[1], -1) {
				key := prefix + name[1]
				if !strings.Contains(name[1], ".") && parent != "" {
					key = parent + name[1] // a sibling of the row's first key
				}
				if i := strings.LastIndex(key, "."); parent == "" && i >= 0 {
					parent = key[:i+1]
				}
				rows++
				if !known[key] {
					t.Errorf("docs/%s: the reference names %s, which the configuration does not have", file, key)
				}
			}
		}
	}
	if rows < 60 {
		t.Fatalf("%d keys in the reference tables; is the reader broken?", rows)
	}
}

// configPaths adds the YAML paths of t's fields to known: a.b, and a[].b
// for lists of sections.
func configPaths(t reflect.Type, prefix string, known map[string]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		path := prefix + name
		known[path] = true
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch ft.Kind() {
		case reflect.Struct:
			configPaths(ft, path+".", known)
		case reflect.Slice:
			configPaths(ft.Elem(), path+"[].", known)
		}
	}
}

// yamlExample checks each document of a YAML block: a trust map (it has an
// id) compiles; anything else is a part of the configuration file.
func yamlExample(b mdblocks.Block) []string {
	var out []string
	for i, doc := range strings.Split(b.Text, "\n---\n") {
		name := fmt.Sprintf("%s (document %d)", b, i+1)
		if regexp.MustCompile(`(?m)^server: `).MatchString(doc) && regexp.MustCompile(`(?m)^rules:`).MatchString(doc) {
			if _, err := toolpolicy.Compile(toolpolicy.Document{Name: name, Data: []byte(doc)}); err != nil {
				out = append(out, "tool policy: "+err.Error())
			}
			continue
		}
		if regexp.MustCompile(`(?m)^id: `).MatchString(doc) {
			if _, err := (trustmaps.Options{Places: noPlaces{}}).Compile(trustmaps.Document{Name: name, Data: []byte(doc)}); err != nil {
				out = append(out, "trust map: "+err.Error())
			}
			continue
		}
		if _, _, err := config.Parse(name, []byte(doc)); err != nil {
			out = append(out, "configuration: "+err.Error())
		}
	}
	return out
}

// noPlaces lets maps that use geolocation compile: the examples are
// checked, not run.
type noPlaces struct{}

func (noPlaces) Place(netip.Addr) trustmaps.Place { return trustmaps.Place{} }

// shellExample checks the command lines of a shell block.
func shellExample(root *cobra.Command, b mdblocks.Block) []string {
	var out []string
	for _, line := range commandLines(b.Text) {
		args := shellWords(line)
		for len(args) > 0 && regexp.MustCompile(`^[A-Z_]+=`).MatchString(args[0]) {
			args = args[1:] // VAR=value before a command
		}
		switch {
		case len(args) >= 3 && args[0] == "go" && args[1] == "run" && args[2] == "./cmd/mcpsts":
			out = append(out, mcpstsLine(root, args[3:])...)
		case len(args) >= 1 && args[0] == "mcpsts":
			out = append(out, mcpstsLine(root, args[1:])...)
		case len(args) >= 2 && args[0] == "go" && args[1] == "test":
			out = append(out, goTestLine(args[2:])...)
		case len(args) >= 3 && args[0] == "go" && args[1] == "run":
			if _, err := os.Stat(filepath.Join("..", "..", args[2])); err != nil {
				out = append(out, fmt.Sprintf("go run %s: no such package", args[2]))
			}
		}
	}
	return out
}

// commandLines are the commands of a shell block: continuation lines
// joined, comments dropped, one command per line or per && ; |.
func commandLines(text string) []string {
	text = strings.ReplaceAll(text, "\\\n", " ")
	var out []string
	for _, line := range strings.Split(text, "\n") {
		line = stripComment(line)
		line = strings.NewReplacer("$(", "\n", "(cd ", "\n", ")", "\n").Replace(line)
		for _, part := range regexp.MustCompile(`&&|;|\||\n`).Split(line, -1) {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

// stripComment drops a # comment that is not in quotes.
func stripComment(line string) string {
	var quote rune
	for i, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && (i == 0 || line[i-1] == ' '):
			return line[:i]
		}
	}
	return line
}

// shellWords splits a command line as a shell would, quotes removed.
func shellWords(line string) []string {
	var out []string
	var cur strings.Builder
	var quote rune
	in := false
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// mcpstsLine checks that args name an mcpsts command and only its flags.
func mcpstsLine(root *cobra.Command, args []string) []string {
	cmd, rest, err := root.Find(args)
	if err != nil {
		return []string{fmt.Sprintf("mcpsts %s: %v", strings.Join(args, " "), err)}
	}
	if cmd == root && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		return []string{fmt.Sprintf("mcpsts %s: no such command", rest[0])}
	}
	var out []string
	for _, a := range rest {
		if a == "--" {
			break // the child's command line
		}
		if !strings.HasPrefix(a, "--") || a == "…" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if cmd.Flags().Lookup(name) == nil && cmd.InheritedFlags().Lookup(name) == nil {
			out = append(out, fmt.Sprintf("mcpsts %s: no flag --%s", cmd.CommandPath()[len("mcpsts "):], name))
		}
	}
	return out
}

// goTestLine checks that a go test line's packages exist and that its
// -bench and -run patterns match benchmarks and tests they have.
func goTestLine(args []string) []string {
	var pkgs, out []string
	patterns := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case strings.HasPrefix(a, "./"):
			pkgs = append(pkgs, strings.TrimSuffix(strings.TrimSuffix(a, "..."), "/"))
		case (a == "-bench" || a == "-run") && i+1 < len(args):
			patterns[a] = args[i+1]
			i++
		}
	}
	for _, pkg := range pkgs {
		dir := filepath.Join("..", "..", pkg)
		tests, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
		if pkg == "." {
			continue // ./...: every package
		}
		if len(tests) == 0 {
			out = append(out, fmt.Sprintf("go test %s: no such package with tests", pkg))
			continue
		}
		var src strings.Builder
		for _, f := range tests {
			data, _ := os.ReadFile(f)
			src.Write(data)
		}
		for flag, kind := range map[string]string{"-bench": "Benchmark", "-run": "Test"} {
			p := patterns[flag]
			if p == "" || p == "X" || p == "XXX" {
				continue
			}
			re, err := regexp.Compile(p)
			if err != nil {
				out = append(out, fmt.Sprintf("go test %s %s %q: %v", pkg, flag, p, err))
				continue
			}
			found := false
			for _, m := range regexp.MustCompile(`(?m)^func (`+kind+`\w+)\(`).FindAllStringSubmatch(src.String(), -1) {
				found = found || re.MatchString(m[1])
			}
			if !found {
				out = append(out, fmt.Sprintf("go test %s %s %q: no %s matches", pkg, flag, p, strings.ToLower(kind)))
			}
		}
	}
	return out
}

// goExample checks that a Go block parses, as statements of a function.
func goExample(b mdblocks.Block) []string {
	src := "package p\nfunc _() {\n" + b.Text + "\n}\n"
	if _, err := parser.ParseFile(token.NewFileSet(), b.String(), src, parser.AllErrors); err != nil {
		return []string{"Go: " + err.Error()}
	}
	return nil
}
