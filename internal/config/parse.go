package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/mcpsts/mcpsts/internal/strictyaml"
)

// Parse decodes one YAML document over Defaults. Unknown keys, repeated keys
// and values of the wrong type are all reported, each with its field path
// and line. lines maps each field path that the file set to its line.
func Parse(file string, data []byte) (cfg *Config, lines map[string]int, err error) {
	d, err := decode(file, data)
	if err != nil {
		return nil, nil, err
	}
	if len(d.problems) > 0 {
		return nil, nil, errors.Join(d.problems...)
	}
	return d.cfg, d.lines, nil
}

// decoded is a file decoded as far as it could be: what Load validates
// further, so that a file's problems all come back at once.
type decoded struct {
	cfg      *Config
	lines    map[string]int
	problems []error  // each a *FieldError
	unsound  []string // the paths whose values could not be decoded
}

// decode decodes one YAML document over Defaults; err is a document that
// cannot be read at all.
func decode(file string, data []byte) (decoded, error) {
	docs, err := strictyaml.Documents(data)
	if err != nil {
		var p strictyaml.Problem
		errors.As(err, &p)
		return decoded{}, &FieldError{File: file, Msg: p.Msg}
	}
	if len(docs) > 1 {
		return decoded{}, &FieldError{File: file, Line: docs[1].Line, Msg: "holds more than one YAML document"}
	}
	c := Defaults()
	d := decoded{cfg: &c, lines: map[string]int{}}
	if len(docs) == 1 {
		var problems []strictyaml.Problem
		d.lines, problems = strictyaml.Decode(docs[0], "", &c)
		for _, p := range problems {
			d.problems = append(d.problems, &FieldError{File: file, Line: p.Line, Path: p.Path, Msg: p.Msg})
			if !p.Ignored {
				d.unsound = append(d.unsound, p.Path)
			}
		}
	}
	return d, nil
}

// under reports whether path is one of paths or inside one.
func under(path string, paths []string) bool {
	for _, u := range paths {
		if u == "" || path == u || strings.HasPrefix(path, u+".") || strings.HasPrefix(path, u+"[") {
			return true
		}
	}
	return false
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

// FederationDocument is a trusted provider managed through the admin API:
// exactly one of OIDC (type oidc, the default), SPIFFE (type spiffe: a
// trust domain) and AWS (type aws: IAM identities through STS).
type FederationDocument struct {
	Type   string
	OIDC   *Provider
	SPIFFE *TrustDomain
	AWS    *AWS
}

// Name is the provider name trust maps match: the OIDC provider's name, the
// trust domain, the AWS provider name (default aws).
func (d FederationDocument) Name() string {
	switch {
	case d.SPIFFE != nil:
		return d.SPIFFE.Name
	case d.AWS != nil:
		return d.AWS.ProviderName()
	case d.OIDC != nil:
		return d.OIDC.Name
	}
	return ""
}

// ParseFederationDocument decodes and checks one provider document of the
// admin API: its member type (oidc, spiffe or aws; default oidc) selects
// the rules of providers[], spiffe.trust_domains[] or aws in the
// configuration file.
func ParseFederationDocument(name string, data []byte) (FederationDocument, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		return FederationDocument{}, &FieldError{File: name, Msg: "not a JSON object: " + err.Error()}
	}
	typ := "oidc"
	if raw, ok := members["type"]; ok {
		if err := json.Unmarshal(raw, &typ); err != nil {
			return FederationDocument{}, &FieldError{File: name, Path: "type", Msg: "want a string"}
		}
		delete(members, "type")
	}
	rest, _ := json.Marshal(members)
	doc := FederationDocument{Type: typ}
	switch typ {
	case "oidc":
		p, err := ParseProvider(name, rest)
		if err != nil {
			return doc, err
		}
		doc.OIDC = p
		return doc, nil
	case "spiffe":
		doc.SPIFFE = &TrustDomain{}
		return doc, decodeChecked(name, rest, doc.SPIFFE, doc.SPIFFE.problems)
	case "aws":
		doc.AWS = &AWS{}
		err := decodeChecked(name, rest, doc.AWS, doc.AWS.problems)
		doc.AWS.Enabled = true
		return doc, err
	}
	return doc, &FieldError{File: name, Path: "type", Msg: fmt.Sprintf("%q is not oidc, spiffe or aws", typ)}
}

// ParsePostureSource decodes and checks one posture source document of the
// admin API, by the rules of posture[] in the configuration file.
func ParsePostureSource(name string, data []byte) (*PostureSource, error) {
	ps := &PostureSource{}
	return ps, decodeChecked(name, data, ps, ps.problems)
}

// decodeChecked decodes data strictly into v, then checks it.
func decodeChecked(name string, data []byte, v any, check func() []problem) error {
	docs, err := strictyaml.Documents(data)
	if err != nil || len(docs) != 1 {
		return &FieldError{File: name, Msg: "want exactly one document"}
	}
	lines, problems := strictyaml.Decode(docs[0], "", v)
	var errs []error
	for _, pr := range problems {
		errs = append(errs, &FieldError{File: name, Line: pr.Line, Path: pr.Path, Msg: pr.Msg})
	}
	if len(errs) == 0 {
		for _, pr := range check() {
			errs = append(errs, &FieldError{File: name, Line: lines[pr.field], Path: pr.field, Msg: pr.msg})
		}
	}
	return errors.Join(errs...)
}
