package resource

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"time"
)

// ToolPolicy decides each tools/call a request makes, on its tool, its
// arguments and its caller (package toolpolicy implements it). It is read
// from the exact bytes the MCP handler reads: a body whose calls it cannot
// read one way only is refused.
type ToolPolicy interface {
	DecideToolCall(ctx context.Context, call ToolCall) ToolDecision
	// ShowTools says, for one tools/list answer to the caller of call
	// (its Tool and Args unset), whether a tool is shown: whether some
	// call of it could be allowed.
	ShowTools(ctx context.Context, call ToolCall) func(tool string) bool
}

// ToolCall is one tools/call as a ToolPolicy sees it.
type ToolCall struct {
	Tool     string
	Args     map[string]any // numbers are int64 when whole, float64 otherwise
	Caller   Claims
	Claims   map[string]any // every claim of the token
	Time     time.Time
	SourceIP string
}

// ToolDecision is a ToolPolicy's answer.
type ToolDecision struct {
	Effect string   // "allow", "deny" or "step_up"
	Reason string   // what the caller is told of a denial
	Rule   string   // the rule that decided, for logs
	Scopes []string // step_up: the scopes to come back with
}

// decideCalls applies the policy to every tools/call of body; it answers
// and returns false when one is not allowed: a denied call gets a tool
// result with isError (the model reads why, as of any tool error), a call
// to step up the 403 insufficient_scope challenge MCP clients follow, a
// batch with a call not allowed 403 as a whole.
func (s *Server) decideCalls(w http.ResponseWriter, r *http.Request, body []byte, claims *Claims, raw string, route []string) bool {
	calls, err := callsIn(body, true)
	if err != nil {
		s.reject(w, http.StatusBadRequest, "invalid_request", err.Error())
		return false
	}
	if len(calls) == 0 {
		return true
	}
	all, source := allClaims(raw), sourceAddr(r)
	batch := bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("["))
	for _, c := range calls {
		tc := ToolCall{Tool: c.name, Args: c.args, Caller: *claims, Claims: all, Time: s.cfg.Clock(), SourceIP: source}
		d := s.cfg.ToolPolicy.DecideToolCall(r.Context(), tc)
		if s.cfg.ToolDecisions != nil {
			s.cfg.ToolDecisions(r.Context(), tc, d)
		}
		switch {
		case d.Effect == "allow":
			continue
		case d.Effect == "step_up":
			s.cfg.Log.Info("tool call: step up", "tool", c.name, "rule", d.Rule, "subject", claims.Subject)
			s.challenge(w, http.StatusForbidden, "insufficient_scope", "this call needs more: "+strings.Join(d.Scopes, " "), dedupe(append(append([]string{}, route...), d.Scopes...)))
			return false
		case batch:
			s.cfg.Log.Info("tool call refused", "tool", c.name, "rule", d.Rule, "subject", claims.Subject)
			s.reject(w, http.StatusForbidden, "access_denied", "a call of this batch is refused by the server's tool policy: "+d.Reason)
			return false
		default:
			s.cfg.Log.Info("tool call refused", "tool", c.name, "rule", d.Rule, "subject", claims.Subject)
			refuseCall(w, c.id, d.Reason)
			return false
		}
	}
	return true
}

// refuseCall answers a tools/call with a tool error: MCP clients hand it
// to the model, which reads why.
func refuseCall(w http.ResponseWriter, id json.RawMessage, reason string) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	type content struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": id, "result": map[string]any{
		"content": []content{{Type: "text", Text: "refused by the server's tool policy: " + reason}}, "isError": true}})
}

func sourceAddr(r *http.Request) string {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	return host
}

// allClaims are every claim of a verified token, for policies that read
// more than Claims holds.
func allClaims(raw string) map[string]any {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return map[string]any{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return map[string]any{}
	}
	var m map[string]any
	if json.Unmarshal(payload, &m) != nil {
		return map[string]any{}
	}
	return m
}

// toolsListed reports whether body asks tools/list (in a message or a
// batch).
func toolsListed(body []byte) bool {
	if !bytes.Contains(body, []byte("tools/list")) && bytes.IndexByte(body, '\\') < 0 {
		return false
	}
	var one struct{ Method string }
	if json.Unmarshal(body, &one) == nil {
		return one.Method == "tools/list"
	}
	var batch []struct{ Method string }
	if json.Unmarshal(body, &batch) == nil {
		for _, m := range batch {
			if m.Method == "tools/list" {
				return true
			}
		}
	}
	return false
}

// listFilter removes from the tools/list answers it carries (a JSON body,
// or the events of an event stream) the tools keep refuses.
type listFilter struct {
	http.ResponseWriter
	keep    func(name string) bool
	mode    string // "json", "sse" or "" (passed through)
	started bool
	buf     bytes.Buffer
}

func (f *listFilter) WriteHeader(status int) {
	if f.started {
		return
	}
	f.started = true
	ct := f.Header().Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/json"):
		f.mode = "json"
		f.Header().Del("Content-Length")
	case strings.HasPrefix(ct, "text/event-stream"):
		f.mode = "sse"
		f.Header().Del("Content-Length")
	}
	f.ResponseWriter.WriteHeader(status)
}

func (f *listFilter) Write(p []byte) (int, error) {
	if !f.started {
		f.WriteHeader(http.StatusOK)
	}
	switch f.mode {
	case "json":
		return f.buf.Write(p)
	case "sse":
		f.buf.Write(p)
		for {
			i := bytes.Index(f.buf.Bytes(), []byte("\n\n"))
			if i < 0 {
				return len(p), nil
			}
			event := f.buf.Next(i + 2)
			if _, err := f.ResponseWriter.Write(f.event(event)); err != nil {
				return 0, err
			}
		}
	}
	return f.ResponseWriter.Write(p)
}

// Flush passes a stream's events on as they come; a flush before any
// write decides the mode first, as a write would.
func (f *listFilter) Flush() {
	if !f.started {
		f.WriteHeader(http.StatusOK)
	}
	if fl, ok := f.ResponseWriter.(http.Flusher); ok && f.mode != "json" {
		fl.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (f *listFilter) Unwrap() http.ResponseWriter { return f.ResponseWriter }

// finish writes a buffered JSON answer, filtered, and what is left of a
// stream.
func (f *listFilter) finish() {
	switch f.mode {
	case "json":
		f.ResponseWriter.Write(f.filter(f.buf.Bytes()))
	case "sse":
		f.ResponseWriter.Write(f.buf.Bytes())
	}
}

// event filters the data of one event of a stream.
func (f *listFilter) event(event []byte) []byte {
	lines := bytes.Split(bytes.TrimSuffix(event, []byte("\n\n")), []byte("\n"))
	var data [][]byte
	var other [][]byte
	for _, l := range lines {
		if d, ok := bytes.CutPrefix(l, []byte("data:")); ok {
			data = append(data, bytes.TrimPrefix(d, []byte(" ")))
		} else {
			other = append(other, l)
		}
	}
	if len(data) == 0 {
		return event
	}
	filtered := f.filter(bytes.Join(data, []byte("\n")))
	var out bytes.Buffer
	for _, l := range other {
		out.Write(l)
		out.WriteByte('\n')
	}
	for _, l := range bytes.Split(filtered, []byte("\n")) {
		out.WriteString("data: ")
		out.Write(l)
		out.WriteByte('\n')
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// filter removes the tools keep refuses from the tools/list results of a
// JSON-RPC message or batch; anything else is left as it is.
func (f *listFilter) filter(doc []byte) []byte {
	var batch []json.RawMessage
	if json.Unmarshal(doc, &batch) == nil {
		for i, m := range batch {
			batch[i] = f.filterOne(m)
		}
		out, err := json.Marshal(batch)
		if err != nil {
			return doc
		}
		return out
	}
	return f.filterOne(doc)
}

func (f *listFilter) filterOne(msg []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(msg, &m) != nil || m["result"] == nil {
		return msg
	}
	var result map[string]json.RawMessage
	if json.Unmarshal(m["result"], &result) != nil || result["tools"] == nil {
		return msg
	}
	var tools []json.RawMessage
	if json.Unmarshal(result["tools"], &tools) != nil {
		return msg
	}
	kept := tools[:0]
	for _, t := range tools {
		var named struct{ Name string }
		if json.Unmarshal(t, &named) == nil && f.keep(named.Name) {
			kept = append(kept, t)
		}
	}
	var err error
	if result["tools"], err = json.Marshal(kept); err != nil {
		return msg
	}
	if m["result"], err = json.Marshal(result); err != nil {
		return msg
	}
	out, err := json.Marshal(m)
	if err != nil {
		return msg
	}
	return out
}

// ArgumentsDigest is the hex SHA-256 of a call's arguments in a canonical
// JSON form (members sorted by name, no HTML escaping, numbers as read),
// recorded in place of the arguments themselves.
func ArgumentsDigest(args map[string]any) string {
	if args == nil {
		args = map[string]any{}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(args)
	sum := sha256.Sum256(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
	return hex.EncodeToString(sum[:])
}
