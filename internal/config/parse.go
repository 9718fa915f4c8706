package config

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

// Parse decodes one YAML document over Defaults. Unknown keys, repeated keys
// and values of the wrong type are all reported, each with its field path
// and line. lines maps each field path that the file set to its line.
func Parse(file string, data []byte) (cfg *Config, lines map[string]int, err error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, &FieldError{File: file, Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, nil, &FieldError{File: file, Line: extra.Line, Msg: "holds more than one YAML document"}
	}
	c := Defaults()
	d := decoder{file: file, lines: map[string]int{}}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		d.value(doc.Content[0], "", reflect.ValueOf(&c).Elem())
	}
	if len(d.errs) > 0 {
		return nil, nil, errors.Join(d.errs...)
	}
	return &c, d.lines, nil
}

// decoder walks the YAML tree beside the Config struct, so that it can name
// the path of every problem; yaml.v3 alone reports only lines.
type decoder struct {
	file  string
	lines map[string]int
	errs  []error
}

var durationType = reflect.TypeOf(time.Duration(0))

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{File: d.file, Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) value(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if path != "" {
		d.lines[path] = n.Line
	}
	if v.Kind() == reflect.Struct {
		d.mapping(n, path, v)
		return
	}
	if v.Kind() == reflect.Slice && v.Type().Elem().Kind() != reflect.Uint8 {
		d.sequence(n, path, v)
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want %s, got a %s", describe(v.Type()), kindName(n.Kind))
		return
	}
	if n.Tag == "!!null" {
		return // an empty value keeps the default
	}
	if v.Kind() == reflect.String && n.Tag != "!!str" {
		// yaml would turn 1.3 or true into a string silently; say so instead
		// of guessing what was meant, except for plain numbers.
		if n.Tag != "!!int" && n.Tag != "!!float" {
			d.fail(n, path, "want a string, got %s (quote it)", n.Value)
			return
		}
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
		what := "the file"
		if path != "" {
			what = "a section"
		}
		d.fail(n, path, "%s must be a mapping of keys to values, got a %s", what, kindName(n.Kind))
		return
	}
	fields := map[string]int{}
	for i := range v.NumField() {
		if f := v.Type().Field(i); f.IsExported() && f.Tag.Get("yaml") != "" {
			fields[f.Tag.Get("yaml")] = i
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
			d.fail(k, p, "set twice (first at line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		idx, ok := fields[k.Value]
		if !ok {
			d.fail(k, p, "unknown field%s", suggest(k.Value, fields))
			continue
		}
		d.value(val, p, v.Field(idx))
	}
}

func describe(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration such as 30s or 5m"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "a whole number"
	case t.Kind() == reflect.Slice:
		return "a list"
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

// suggest names the known keys, so that a typo is quickly mended.
func suggest(key string, fields map[string]int) string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	return " (known: " + strings.Join(names, ", ") + ")"
}
