package resource

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
)

// errNotJSONRPC: a body the middleware cannot read one way only. It is
// refused before the MCP handler sees it, so that the tool this check
// finds is the tool the handler runs (no parser differential).
var errNotJSONRPC = errors.New("the request body is not a JSON-RPC message or batch with unambiguous member names")

// toolsCalled returns the names of the MCP tools a JSON-RPC body calls
// (tools/call, in a single message or a batch). Member names are matched
// exactly; a body with a member name that appears twice in one object, or
// that differs from method, params or name only in case (encoding/json
// would match it), is refused.
func toolsCalled(body []byte) ([]string, error) {
	// Without escapes a string decodes to its own bytes, so a body that
	// holds neither a backslash nor the bytes tools/call calls no tool.
	if bytes.IndexByte(body, '\\') < 0 && !bytes.Contains(body, []byte("tools/call")) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, errNotJSONRPC
	}
	var tools []string
	read := func(first json.Token) error {
		name, call, err := message(dec, first)
		if call {
			tools = append(tools, name)
		}
		return err
	}
	if tok == json.Delim('[') {
		for dec.More() {
			if tok, err = dec.Token(); err != nil {
				return nil, errNotJSONRPC
			}
			if err := read(tok); err != nil {
				return nil, err
			}
		}
		if _, err := dec.Token(); err != nil {
			return nil, errNotJSONRPC
		}
	} else if err := read(tok); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF { // trailing data
		return nil, errNotJSONRPC
	}
	return tools, nil
}

// message reads one JSON-RPC message whose first token is first and
// returns the tool it calls; call is false for any other message.
func message(dec *json.Decoder, first json.Token) (tool string, call bool, err error) {
	var method string
	var hasName bool
	err = members(dec, first, func(key string) error {
		switch key {
		case "method":
			return str(dec, &method, nil)
		case "params":
			tok, err := dec.Token()
			if err != nil {
				return errNotJSONRPC
			}
			if tok != json.Delim('{') {
				return skipRest(dec, tok)
			}
			return members(dec, tok, func(key string) error {
				if key == "name" {
					return str(dec, &tool, &hasName)
				}
				return skip(dec)
			})
		}
		return skip(dec)
	})
	if err != nil {
		return "", false, err
	}
	if method != "tools/call" {
		return "", false, nil
	}
	if !hasName {
		return "", false, errNotJSONRPC
	}
	return tool, true, nil
}

// str reads a value into *dst when it is a string (setting *ok), and
// skips it otherwise.
func str(dec *json.Decoder, dst *string, ok *bool) error {
	tok, err := dec.Token()
	if err != nil {
		return errNotJSONRPC
	}
	if s, isString := tok.(string); isString {
		*dst = s
		if ok != nil {
			*ok = true
		}
		return nil
	}
	return skipRest(dec, tok)
}

// watched are the member names whose reading decides the tool.
var watched = []string{"method", "params", "name"}

// members reads the members of the object that first opens, calling value
// for each name, which must consume the value. A name repeated, or one of
// the watched names in another case, is refused.
func members(dec *json.Decoder, first json.Token, value func(key string) error) error {
	if first != json.Delim('{') {
		return errNotJSONRPC
	}
	var buf [8]string
	seen := buf[:0]
	for dec.More() {
		tok, err := dec.Token()
		key, ok := tok.(string)
		if err != nil || !ok || slices.Contains(seen, key) || variant(key) {
			return errNotJSONRPC
		}
		seen = append(seen, key)
		if err := value(key); err != nil {
			return err
		}
	}
	_, err := dec.Token()
	return err
}

// ignored takes any JSON value and keeps nothing: skipping a value
// through it costs a scan, not a decode.
type ignored struct{}

func (*ignored) UnmarshalJSON([]byte) error { return nil }

// skip consumes the next value.
func skip(dec *json.Decoder) error {
	if dec.Decode(new(ignored)) != nil {
		return errNotJSONRPC
	}
	return nil
}

// skipRest consumes the rest of a value whose first token is tok.
func skipRest(dec *json.Decoder, tok json.Token) error {
	if tok != json.Delim('{') && tok != json.Delim('[') {
		return nil
	}
	for dec.More() {
		if _, isObject := tok.(json.Delim); isObject && tok == json.Delim('{') {
			if _, err := dec.Token(); err != nil { // the member name
				return errNotJSONRPC
			}
		}
		if err := skip(dec); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return errNotJSONRPC
	}
	return nil
}

// variant reports whether key differs from a watched name only in case,
// as encoding/json would match it (Unicode simple folding, under which the
// Kelvin sign is k and the long s is s).
func variant(key string) bool {
	for _, w := range watched {
		if key != w && strings.EqualFold(key, w) {
			return true
		}
	}
	return false
}
