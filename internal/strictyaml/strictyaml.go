// Package strictyaml decodes YAML into Go structs strictly: unknown keys,
// repeated keys and values of the wrong type are all reported, each with
// its field path and line, instead of yaml.v3's first error or its lines
// without paths. Struct fields are matched by their yaml tag.
package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a document.
type Problem struct {
	Line int    // 0 when unknown
	Path string // dotted field path with [i] for list items; "" for the document
	Msg  string
	// Ignored: the key was left out (unknown, or repeated), so what was
	// decoded is still sound and can be checked further; otherwise the
	// value at Path could not be decoded.
	Ignored bool
}

func (p Problem) Error() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Documents parses data into its YAML documents (an empty input has none).
func Documents(data []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, Problem{Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
		}
		docs = append(docs, &doc)
	}
}

// Decode decodes node (a document or a value) into the struct v points to,
// over the values already there (defaults). lines maps each field path the
// document set to its line.
func Decode(node *yaml.Node, prefix string, v any) (lines map[string]int, problems []Problem) {
	d := decoder{lines: map[string]int{}}
	if node.Kind == yaml.DocumentNode {
		if len(node.Content) == 0 {
			return d.lines, nil
		}
		node = node.Content[0]
	}
	d.value(node, prefix, reflect.ValueOf(v).Elem())
	return d.lines, d.problems
}

type decoder struct {
	lines    map[string]int
	problems []Problem
}

var durationType = reflect.TypeOf(time.Duration(0))

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.problems = append(d.problems, Problem{Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// ignored records a key left out of the decoded value.
func (d *decoder) ignored(n *yaml.Node, path, format string, args ...any) {
	d.problems = append(d.problems, Problem{Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...), Ignored: true})
}

func (d *decoder) value(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if path != "" {
		d.lines[path] = n.Line
	}
	switch {
	case v.Kind() == reflect.Pointer:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return // absent: stays nil
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, path, v.Elem())
		return
	case v.Kind() == reflect.Struct:
		d.mapping(n, path, v)
		return
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() != reflect.Uint8:
		d.sequence(n, path, v)
		return
	case v.Kind() == reflect.Map || v.Kind() == reflect.Interface:
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.fail(n, path, "want %s, got a %s", describe(v.Type()), kindName(n.Kind))
		}
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want %s, got a %s", describe(v.Type()), kindName(n.Kind))
		return
	}
	if n.Tag == "!!null" {
		return // an empty value keeps the default
	}
	if v.Kind() == reflect.String && n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float" {
		// yaml would turn true into "true" silently; say so instead of
		// guessing what was meant (plain numbers are fine).
		d.fail(n, path, "want a string, got %s (quote it)", n.Value)
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		d.fail(n, path, "want %s, got %q", describe(v.Type()), n.Value)
	}
}

// sequence decodes a YAML list into a slice, naming items path[i].
func (d *decoder) sequence(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "want a list, got a %s", kindName(n.Kind))
		return
	}
	out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.value(item, fmt.Sprintf("%s[%d]", path, i), out.Index(i))
	}
	v.Set(out)
}

func (d *decoder) mapping(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		what := "the document"
		if path != "" {
			what = "a section"
		}
		d.fail(n, path, "%s must be a mapping of keys to values, got a %s", what, kindName(n.Kind))
		return
	}
	fields := map[string]int{}
	for i := range v.NumField() {
		if f := v.Type().Field(i); f.IsExported() && f.Tag.Get("yaml") != "" {
			fields[strings.Split(f.Tag.Get("yaml"), ",")[0]] = i
		}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := k.Value
		if path != "" {
			p = path + "." + k.Value
		}
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "keys must be plain strings")
			continue
		}
		if line, dup := seen[k.Value]; dup {
			d.ignored(k, p, "set twice (first at line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		idx, ok := fields[k.Value]
		if !ok {
			d.ignored(k, p, "unknown field (known: %s)", known(fields))
			continue
		}
		d.value(val, p, v.Field(idx))
	}
}

func describe(t reflect.Type) string {
	if d, ok := reflect.New(t).Interface().(interface{ Describe() string }); ok {
		return d.Describe()
	}
	switch {
	case t == durationType:
		return "a duration such as 30s or 5m"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "a whole number"
	case t.Kind() == reflect.Slice:
		return "a list"
	case t.Kind() == reflect.Map:
		return "a mapping"
	default:
		return "a string"
	}
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "single value"
	default:
		return "YAML node"
	}
}

func known(fields map[string]int) string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// LineOf is the line of path, or of its nearest enclosing field that the
// document set (a missing providers[2].name points at providers[2]).
func LineOf(lines map[string]int, path string) int {
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}
