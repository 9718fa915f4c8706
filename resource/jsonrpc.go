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
	calls, err := callsIn(body, false)
	if err != nil {
		return nil, err
	}
	var tools []string
	for _, c := range calls {
		tools = append(tools, c.name)
	}
	return tools, nil
}

// toolCall is one tools/call of a body: its tool, its arguments when
// asked for, and its JSON-RPC id (raw).
type toolCall struct {
	name string
	args map[string]any
	id   json.RawMessage
}

// callsIn reads the tools/call messages of a JSON-RPC body as toolsCalled
// does; with args, their arguments too, strictly (see value).
func callsIn(body []byte, args bool) ([]toolCall, error) {
	// Without escapes a string decodes to its own bytes, so a body that
	// holds neither a backslash nor the bytes tools/call calls no tool.
	if bytes.IndexByte(body, '\\') < 0 && !bytes.Contains(body, []byte("tools/call")) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, errNotJSONRPC
	}
	var calls []toolCall
	read := func(first json.Token) error {
		c, call, err := message(dec, first, args)
		if call {
			calls = append(calls, c)
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
	return calls, nil
}

// message reads one JSON-RPC message whose first token is first and
// returns the tool call it is; call is false for any other message.
func message(dec *json.Decoder, first json.Token, withArgs bool) (c toolCall, call bool, err error) {
	var method string
	var hasName bool
	err = members(dec, first, watched, func(key string) error {
		switch key {
		case "method":
			return str(dec, &method, nil)
		case "id":
			var raw json.RawMessage
			if dec.Decode(&raw) != nil {
				return errNotJSONRPC
			}
			c.id = raw
			return nil
		case "params":
			tok, err := dec.Token()
			if err != nil {
				return errNotJSONRPC
			}
			if tok != json.Delim('{') {
				return skipRest(dec, tok)
			}
			return members(dec, tok, watched, func(key string) error {
				switch {
				case key == "name":
					return str(dec, &c.name, &hasName)
				case key == "arguments" && withArgs:
					v, err := value(dec, 0)
					if err != nil {
						return err
					}
					m, ok := v.(map[string]any)
					if !ok && v != nil {
						return errArguments
					}
					c.args = m
					return nil
				}
				return skip(dec)
			})
		}
		return skip(dec)
	})
	if err != nil {
		return toolCall{}, false, err
	}
	if method != "tools/call" {
		return toolCall{}, false, nil
	}
	if !hasName {
		return toolCall{}, false, errNotJSONRPC
	}
	return c, true, nil
}

// ParseArguments reads a tool call's arguments as the middleware reads
// them from a request for a ToolPolicy: strictly (see value), numbers as
// int64 when whole, float64 otherwise. Tools that explain a policy's
// decision read arguments with it, so that they decide as the edges do.
func ParseArguments(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := value(dec, 0)
	if err != nil {
		return nil, errArguments
	}
	m, ok := v.(map[string]any)
	if _, end := dec.Token(); !ok || end != io.EOF {
		return nil, errArguments
	}
	return m, nil
}

// errArguments: arguments a policy cannot read one way only.
var errArguments = errors.New("the tool call's arguments are not a JSON object with unambiguous member names (no name twice, none equal to another but for case), at most 64 levels deep")

// maxDepth bounds the nesting of arguments.
const maxDepth = 64

// value reads the next JSON value whole and strictly, for a policy to read
// what the server will: an object with a member name twice, or with two
// names equal but for case (encoding/json matches names to fields without
// case, so a server would read one of them, maybe not the one the policy
// read), is refused; numbers are int64 when whole and in range, float64
// otherwise; nesting is bounded.
func value(dec *json.Decoder, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errArguments
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, errNotJSONRPC
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			for dec.More() {
				tok, err := dec.Token()
				key, ok := tok.(string)
				if err != nil || !ok {
					return nil, errNotJSONRPC
				}
				for k := range m { // a name twice, or in another case
					if strings.EqualFold(k, key) {
						return nil, errArguments
					}
				}
				if m[key], err = value(dec, depth+1); err != nil {
					return nil, err
				}
			}
			_, err := dec.Token()
			return m, err
		case '[':
			l := []any{}
			for dec.More() {
				v, err := value(dec, depth+1)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			_, err := dec.Token()
			return l, err
		}
		return nil, errNotJSONRPC
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i, nil
		}
		f, err := t.Float64()
		if err != nil {
			return nil, errArguments
		}
		return f, nil
	default: // string, bool, nil
		return t, nil
	}
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

// watched are the member names whose reading decides the call.
var watched = []string{"method", "params", "name", "arguments", "id"}

// members reads the members of the object that first opens, calling value
// for each name, which must consume the value. A name repeated, or one of
// the watched names in another case, is refused.
func members(dec *json.Decoder, first json.Token, watched []string, value func(key string) error) error {
	if first != json.Delim('{') {
		return errNotJSONRPC
	}
	var buf [8]string
	seen := buf[:0]
	for dec.More() {
		tok, err := dec.Token()
		key, ok := tok.(string)
		if err != nil || !ok || slices.Contains(seen, key) || variant(key, watched) {
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
func variant(key string, watched []string) bool {
	for _, w := range watched {
		if key != w && strings.EqualFold(key, w) {
			return true
		}
	}
	return false
}
