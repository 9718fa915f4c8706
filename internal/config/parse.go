package config

import (
	"errors"

	"github.com/mcpsts/mcpsts/internal/strictyaml"
)

// Parse decodes one YAML document over Defaults. Unknown keys, repeated keys
// and values of the wrong type are all reported, each with its field path
// and line. lines maps each field path that the file set to its line.
func Parse(file string, data []byte) (cfg *Config, lines map[string]int, err error) {
	docs, err := strictyaml.Documents(data)
	if err != nil {
		var p strictyaml.Problem
		errors.As(err, &p)
		return nil, nil, &FieldError{File: file, Msg: p.Msg}
	}
	if len(docs) > 1 {
		return nil, nil, &FieldError{File: file, Line: docs[1].Line, Msg: "holds more than one YAML document"}
	}
	c := Defaults()
	lines = map[string]int{}
	if len(docs) == 1 {
		var problems []strictyaml.Problem
		lines, problems = strictyaml.Decode(docs[0], "", &c)
		if len(problems) > 0 {
			errs := make([]error, len(problems))
			for i, p := range problems {
				errs[i] = &FieldError{File: file, Line: p.Line, Path: p.Path, Msg: p.Msg}
			}
			return nil, nil, errors.Join(errs...)
		}
	}
	return &c, lines, nil
}

// ParseProvider decodes and checks one trusted provider given as a
// document of its own (the admin API's, in JSON or YAML), with the same
// rules as an item of providers in the configuration file. Problems name
// the document and the field.
func ParseProvider(name string, data []byte) (*Provider, error) {
	docs, err := strictyaml.Documents(data)
	if err != nil {
		var p strictyaml.Problem
		errors.As(err, &p)
		return nil, &FieldError{File: name, Msg: p.Msg}
	}
	if len(docs) != 1 {
		return nil, &FieldError{File: name, Msg: "want exactly one provider document"}
	}
	var p Provider
	lines, problems := strictyaml.Decode(docs[0], "", &p)
	var errs []error
	for _, pr := range problems {
		errs = append(errs, &FieldError{File: name, Line: pr.Line, Path: pr.Path, Msg: pr.Msg})
	}
	if len(errs) == 0 {
		for _, pr := range p.problems() {
			errs = append(errs, &FieldError{File: name, Line: lines[pr.field], Path: pr.field, Msg: pr.msg})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &p, nil
}
