package resource

import (
	"bytes"
	"context"
	"encoding/base64"
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
	all := allClaims(raw)
	source, _, _ := net.SplitHostPort(r.RemoteAddr)
	batch := bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("["))
	for _, c := range calls {
		d := s.cfg.ToolPolicy.DecideToolCall(r.Context(), ToolCall{Tool: c.name, Args: c.args, Caller: *claims, Claims: all, Time: s.cfg.Clock(), SourceIP: source})
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
