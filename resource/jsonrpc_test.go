package resource

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"
)

type sdkMessage struct {
	Method *string
	Params *struct{ Name *string }
}

// sdkTools is what a decoder like the SDK's (encoding/json into structs:
// member names matched without regard to case, the last duplicate wins)
// reads as the tools a body calls; ok is false when it refuses the body.
func sdkTools(body []byte) (tools []string, ok bool) {
	var msgs []sdkMessage
	if err := json.Unmarshal(body, &msgs); err != nil {
		var m sdkMessage
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, false
		}
		msgs = []sdkMessage{m}
	}
	for _, m := range msgs {
		if m.Method != nil && *m.Method == "tools/call" && m.Params != nil && m.Params.Name != nil {
			tools = append(tools, *m.Params.Name)
		}
	}
	return tools, true
}

func TestToolsCalled(t *testing.T) {
	tests := []struct {
		body string
		want []string
		err  bool
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read"}}`, []string{"read"}, false},
		{` [{"method":"tools/call","params":{"name":"a"}},{"method":"tools/list"},{"id":3,"result":{}},{"method":"tools/call","params":{"name":"b"}}]`, []string{"a", "b"}, false},
		{`{"method":"tools/list","params":{"name":"x","Name":"y"}}`, nil, false},
		{`{"method":"tools/call","params":{"name":"a","name":"b"}}`, nil, true},
		{`{"method":"tools/call","params":{"name":"a","NAME":"b"}}`, nil, true},
		{`{"method":"tools/list","Method":"tools/call","params":{"name":"b"}}`, nil, true},
		{`{"METHOD":"tools/call","params":{"name":"b"}}`, nil, true},
		{"{\"method\":\"tools/call\",\"params\":{\"\u212aey\":1,\"name\":\"a\"}}", []string{"a"}, false},
		{"{\"method\":\"tools/call\",\"params\":{\"\u017fname\":1,\"name\":\"a\"}}", []string{"a"}, false},
		{"{\"method\":\"tools/call\",\"param\u017f\":{\"name\":\"b\"}}", nil, true},
		{`{"method":"tools/call","params":{"name":7}}`, nil, true},
		{`{"method":"tools/call","params":"x"}`, nil, true},
		{`{"method":"tools/call"} {"method":"tools/call","params":{"name":"b"}}`, nil, true},
		{"\u00a0{}", nil, false},
		{``, nil, false},
		{`[1]`, nil, false},
		{"\u00a0{\"method\":\"tools/call\",\"params\":{\"name\":\"a\"}}", nil, true},
		{`{"method":"tools/call","params":{"name":"a"}} x`, nil, true},
		{`{"method":"tools/call","params":{"name":"a"}}]`, nil, true},
		{`{"method":"tools/call"}`, nil, true},
		{`{"method":"tools\/call","params":{"name":"a"}}`, []string{"a"}, false},
		{`{"params":{"arguments":{"name":"x","method":"y"},"name":"a"},"method":"tools/call"}`, []string{"a"}, false},
		{`{"method":"tools/call","params":{"name":"a"},"x":{"method":1,"Method":2}}`, []string{"a"}, false},
	}
	for _, tc := range tests {
		got, err := toolsCalled([]byte(tc.body))
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, %v", tc.body, got, err)
		}
	}
}

// FuzzToolsCalled: whenever the middleware accepts a body, it finds the
// same tool calls an encoding/json struct decoder does, its fast path
// never skips a call it must check, and it never panics.
func FuzzToolsCalled(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","arguments":{"a":1}}}`,
		`[{"method":"tools/call","params":{"name":"a"}},{"method":"ping"}]`,
		`{"method":"tools/call","params":{"name":"a","Name":"b"}}`,
		"{\"method\":\"tools/call\",\"param\u017f\":{\"name\":\"b\"}}",
		`{"method":"tools/call","params":null}`,
		`{"id":1,"result":{"content":[]}}`,
		`{"method":"tools/call","params":{"name":"write_fil\u0065"}}`,
	} {
		f.Add([]byte(s))
	}
	s := &Server{tools: []tool{{name: []byte("write_file"), scopes: []string{"files:write"}}}}
	f.Fuzz(func(t *testing.T, body []byte) {
		// The fast path never lets through a body that calls a tool the
		// caller lacks a scope for.
		if !s.mayCallUncovered(body, map[string]bool{"files:read": true}) {
			if tools, ok := sdkTools(body); ok && slices.Contains(tools, "write_file") {
				t.Fatalf("fast path passed a call of write_file: %q", body)
			}
		}
		got, err := toolsCalled(body)
		if err != nil {
			return
		}
		want, ok := sdkTools(body)
		if ok && !slices.Equal(got, want) {
			t.Fatalf("middleware reads %q, an encoding/json decoder %q, from %q", got, want, body)
		}
	})
}

type sdkCall struct {
	Method *string
	Params *struct {
		Name      *string
		Arguments map[string]any
	}
}

// sdkArguments is what an encoding/json decoder reads as the arguments of
// each tools/call of body (numbers as the middleware gives them).
func sdkArguments(body []byte) ([]map[string]any, bool) {
	var msgs []sdkCall
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&msgs); err != nil {
		var m sdkCall
		dec = json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			return nil, false
		}
		msgs = []sdkCall{m}
	}
	var out []map[string]any
	for _, m := range msgs {
		if m.Method != nil && *m.Method == "tools/call" && m.Params != nil && m.Params.Name != nil {
			a, _ := numbers(m.Params.Arguments).(map[string]any)
			out = append(out, a)
		}
	}
	return out, true
}

// numbers gives json.Numbers as the middleware does: int64 when whole and
// in range, float64 otherwise.
func numbers(v any) any {
	switch t := v.(type) {
	case map[string]any:
		if t == nil {
			return map[string]any(nil)
		}
		for k, x := range t {
			t[k] = numbers(x)
		}
		return t
	case []any:
		for i, x := range t {
			t[i] = numbers(x)
		}
		return t
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	}
	return v
}

// FuzzCallArguments (issue 33): whenever the middleware reads a body's
// arguments for a tool policy, they are the arguments an encoding/json
// decoder (the SDKs') reads: no member the policy did not see, no value
// it saw another way.
func FuzzCallArguments(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"refund","arguments":{"amount":20,"note":"x"}}}`,
		`{"method":"tools/call","params":{"name":"w","arguments":{"name":"a","Name":"b"}}}`,
		`{"method":"tools/call","params":{"name":"w","arguments":{"name":"a","name":"b"}}}`,
		`[{"method":"tools/call","params":{"name":"w","arguments":{"a":[1,2.5,{"b":null}]}}},{"method":"tools/call","params":{"name":"v"}}]`,
		`{"method":"tools/call","params":{"name":"w","arguments":{"n\u0061me":"a","amount":1e3,"big":123456789012345678901234567890}}}`,
		`{"method":"tools/call","params":{"name":"w","arguments":{"a":1},"Arguments":{"a":2}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		calls, err := callsIn(body, true)
		if err != nil {
			return
		}
		want, ok := sdkArguments(body)
		if !ok {
			return
		}
		if len(want) != len(calls) {
			t.Fatalf("%d calls read, an encoding/json decoder %d, from %q", len(calls), len(want), body)
		}
		for i, c := range calls {
			got := c.args
			if got == nil {
				got = map[string]any{}
			}
			w := want[i]
			if w == nil {
				w = map[string]any{}
			}
			if !reflect.DeepEqual(got, w) {
				t.Fatalf("call %d: arguments %#v, an encoding/json decoder %#v, from %q", i, got, w, body)
			}
		}
	})
}

// TestArgumentsDigest: the digest of a call's arguments is of their
// canonical form: members sorted, no HTML escaping, numbers as read.
func TestArgumentsDigest(t *testing.T) {
	sum := sha256.Sum256([]byte(`{"a":"<x>","b":1,"c":[2.5,{"d":null}]}`))
	if got := ArgumentsDigest(map[string]any{"c": []any{2.5, map[string]any{"d": nil}}, "b": int64(1), "a": "<x>"}); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("digest %s", got)
	}
	empty := sha256.Sum256([]byte(`{}`))
	if got := ArgumentsDigest(nil); got != hex.EncodeToString(empty[:]) {
		t.Fatalf("no arguments: %s", got)
	}
}

// TestListFilterStream: an event stream is filtered event by event, and
// its headers drop the handler's length even when it flushes before it
// writes.
func TestListFilterStream(t *testing.T) {
	rec := httptest.NewRecorder()
	f := &listFilter{ResponseWriter: rec, keep: func(name string) bool { return name != "erase_all" }}
	f.Header().Set("Content-Type", "text/event-stream")
	f.Header().Set("Content-Length", "999") // the length of what the handler meant to send
	f.Flush()
	f.Write([]byte("event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"read\"},{\"name\":\"erase_all\"}]}}\n"))
	f.Write([]byte("\n"))
	f.finish()
	want := "event: message\ndata: {\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{\"tools\":[{\"name\":\"read\"}]}}\n\n"
	if cl := rec.Result().Header.Get("Content-Length"); cl != "" {
		t.Fatalf("the filtered stream went out with Content-Length %s", cl)
	}
	if rec.Body.String() != want || !rec.Flushed {
		t.Fatalf("%q (flushed %v), want %q", rec.Body.String(), rec.Flushed, want)
	}
}
