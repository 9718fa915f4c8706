package toolpolicy_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/resource"
)

// TestEnforcedByResource: the resource middleware applies a server's
// policy to every tools/call, reading the arguments from the exact bytes
// the server reads; a denied call is the tool's error (the server never
// runs it), a step up the 403 challenge; arguments that could be read two
// ways are refused (argument smuggling), in single messages and batches.
func TestEnforcedByResource(t *testing.T) {
	const files = "https://files.example.com/mcp"
	broker := federationtest.NewIssuer(t)
	broker.AddKey("ES256")
	p := documented(t)
	rs, err := resource.New(resource.Config{Resource: files, Issuer: broker.URL, Transport: broker.Transport(),
		ToolScopes: map[string][]string{"read_file": {"files:read"}, "write_file": {"files:write"}},
		ToolPolicy: p.For(files).ForResource()})
	if err != nil {
		t.Fatal(err)
	}
	var reached atomic.Int64
	srv := httptest.NewTLSServer(rs.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(string(body), "tools/list") {
			w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read_file","inputSchema":{"type":"object"}},{"name":"write_file"},{"name":"erase_all"}],"nextCursor":"c2"}}`))
			return
		}
		w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`))
	})))
	defer srv.Close()
	now := time.Now().Unix()
	token := broker.Sign(map[string]any{"iss": broker.URL, "sub": "user:corp/alice", "aud": files, "client_id": "agent",
		"scope": "files:read files:write", "iat": now, "exp": now + 600, "jti": "j1",
		"act": map[string]any{"sub": "workload:k8s/system:serviceaccount:apps:agent"}}, map[string]any{"typ": "at+jwt"})
	call := func(args string) string {
		return `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"write_file","arguments":` + args + `}}`
	}
	deep := strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70)
	for _, tc := range []struct {
		name    string
		body    string
		status  int
		refused string // the tool error's text, when a call is refused with 200
		reached bool
	}{
		{"a report", call(`{"name":"reports/q4.md","content":"x"}`), 200, "", true},
		{"a read (tools without rules: allow)", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"name":"x"}}}`, 200, "", true},
		{"not a call", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, 200, "", true},
		{"a write elsewhere", call(`{"name":"notes.txt","content":"x"}`), 200, "files are written under reports/ only", false},
		{"a path climbing out", call(`{"name":"reports/../notes.txt"}`), 200, "files are written under reports/ only", false},
		{"an escaped name the policy decodes as the server does", call(`{"name":"\u0072eports/x"}`), 200, "", true},
		{"an escaped path climbing out", call(`{"name":"reports/\u002e\u002e/notes.txt"}`), 200, "files are written under reports/ only", false},
		{"a name twice", call(`{"name":"reports/x","name":"notes.txt"}`), 400, "", false},
		{"a name in another case", call(`{"name":"reports/x","Name":"notes.txt"}`), 400, "", false},
		{"a name in another case, escaped", call(`{"name":"reports/x","N\u0041ME":"notes.txt"}`), 400, "", false},
		{"a nested member twice", call(`{"name":"reports/x","meta":{"a":1,"a":2}}`), 400, "", false},
		{"too deep", call(`{"name":"reports/x","meta":` + deep + `}`), 400, "", false},
		{"arguments not an object", call(`["reports/x"]`), 400, "", false},
		{"a number where the name goes", call(`{"name":42}`), 200, "could not be evaluated", false},
		{"arguments twice", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"write_file","arguments":{"name":"reports/x"},"arguments":{"name":"notes.txt"}}}`, 400, "", false},
		{"arguments in another case", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"write_file","arguments":{"name":"reports/x"},"Arguments":{"name":"notes.txt"}}}`, 400, "", false},
		{"a batch mixing allowed and denied calls", `[` + call(`{"name":"reports/x"}`) + `,` + call(`{"name":"notes.txt"}`) + `]`, 403, "", false},
		{"a batch of allowed calls", `[` + call(`{"name":"reports/x"}`) + `,` + call(`{"name":"reports/y"}`) + `]`, 200, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := reached.Load()
			resp, body := post(t, srv, token, tc.body)
			if resp.StatusCode != tc.status || (reached.Load() > before) != tc.reached {
				t.Fatalf("%d %s (handler reached: %v), want %d (reached: %v)", resp.StatusCode, body, reached.Load() > before, tc.status, tc.reached)
			}
			if tc.refused != "" {
				var m struct {
					ID     int `json:"id"`
					Result struct {
						IsError bool `json:"isError"`
						Content []struct{ Text string }
					}
				}
				json.Unmarshal(body, &m)
				if m.ID != 7 || !m.Result.IsError || len(m.Result.Content) != 1 || !strings.Contains(m.Result.Content[0].Text, tc.refused) {
					t.Fatalf("refusal %s, want a tool error saying %q", body, tc.refused)
				}
			}
		})
	}
}

// TestToolsListedByResource: a JSON tools/list answer keeps the tools some
// call could be allowed for (under the files policy: every tool, the
// writes depending on their name), the rest of the answer as it was.
func TestToolsListedByResource(t *testing.T) {
	const deploy = "https://deploy.example.com/mcp"
	broker := federationtest.NewIssuer(t)
	broker.AddKey("ES256")
	rs, err := resource.New(resource.Config{Resource: deploy, Issuer: broker.URL, Transport: broker.Transport(),
		ToolPolicy: documented(t).For(deploy).ForResource()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(rs.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "999")
		w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"deploy","inputSchema":{"type":"object"}},{"name":"status"}],"nextCursor":"c2"}}`))
	})))
	defer srv.Close()
	now := time.Now().Unix()
	for _, tc := range []struct {
		sub  string
		act  map[string]any
		want string
	}{
		{"user:corp/alice", nil, `{"id":1,"jsonrpc":"2.0","result":{"nextCursor":"c2","tools":[{"name":"deploy","inputSchema":{"type":"object"}}]}}`},
		{"workload:k8s/system:serviceaccount:apps:agent", nil, `{"id":1,"jsonrpc":"2.0","result":{"nextCursor":"c2","tools":[]}}`},
	} {
		token := broker.Sign(map[string]any{"iss": broker.URL, "sub": tc.sub, "aud": deploy, "client_id": "agent",
			"iat": now, "exp": now + 600, "jti": "j" + tc.sub}, map[string]any{"typ": "at+jwt"})
		resp, body := post(t, srv, token, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != tc.want {
			t.Errorf("%s: %d %s\nwant %s", tc.sub, resp.StatusCode, body, tc.want)
		}
	}
}

// TestDelegationPolicyAndScopes (issue 33): delegation × policy × tool
// scopes together, through the resource middleware, for tokens as the
// broker issues them (a person's; an agent's acting for a person, whose
// subject is the person and act the agent; an agent's acting for an
// agent): the tool scopes are checked first, then each rule that reads the
// caller gives the intended answer for each — a policy must not read a
// delegated token's caller another way than a direct one's.
func TestDelegationPolicyAndScopes(t *testing.T) {
	const deploy = "https://deploy.example.com/mcp"
	broker := federationtest.NewIssuer(t)
	broker.AddKey("ES256")
	rs, err := resource.New(resource.Config{Resource: deploy, Issuer: broker.URL, Transport: broker.Transport(),
		ToolScopes: map[string][]string{"deploy": {"deploy:run"}},
		ToolPolicy: documented(t).For(deploy).ForResource()})
	if err != nil {
		t.Fatal(err)
	}
	var reached atomic.Int64
	srv := httptest.NewTLSServer(rs.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`))
	})))
	defer srv.Close()
	now := time.Now().Unix()
	agentA := map[string]any{"sub": "workload:k8s/system:serviceaccount:apps:agent", "client_id": "agent"}
	for _, tc := range []struct {
		name   string
		sub    string
		act    map[string]any
		scope  string
		env    string
		status int
		ran    bool
	}{
		{"a person", "user:corp/alice", nil, "deploy:run", "staging", 200, true},
		{"an agent for a person", "user:corp/alice", agentA, "deploy:run", "staging", 200, true},
		{"an agent for an agent for a person", "user:corp/alice", map[string]any{"sub": "workload:k8s/system:serviceaccount:apps:executor", "act": agentA}, "deploy:run", "staging", 200, true},
		{"an agent for an agent", "workload:k8s/system:serviceaccount:apps:planner", agentA, "deploy:run", "staging", 200, false},
		{"an agent alone", "workload:k8s/system:serviceaccount:apps:agent", nil, "deploy:run", "staging", 200, false},
		{"a person to production", "user:corp/alice", agentA, "deploy:run", "production", 200, false},
		{"a person without the tool's scope", "user:corp/alice", agentA, "deploy:read", "staging", 403, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims := map[string]any{"iss": broker.URL, "sub": tc.sub, "aud": deploy, "client_id": "desktop", "scope": tc.scope,
				"iat": now, "exp": now + 600, "jti": "j-" + tc.name}
			if tc.act != nil {
				claims["act"] = tc.act
			}
			token := broker.Sign(claims, map[string]any{"typ": "at+jwt"})
			before := reached.Load()
			resp, body := post(t, srv, token, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy","arguments":{"environment":"`+tc.env+`"}}}`)
			if resp.StatusCode != tc.status || (reached.Load() > before) != tc.ran {
				t.Fatalf("%d %s (ran: %v), want %d (ran: %v)", resp.StatusCode, body, reached.Load() > before, tc.status, tc.ran)
			}
			if tc.status == 200 && !tc.ran && !strings.Contains(string(body), "deploys go to staging, for a person") {
				t.Fatalf("the refusal does not say why: %s", body)
			}
		})
	}
}

// post sends one JSON-RPC body to the protected server with token.
func post(t *testing.T, srv *httptest.Server, token, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+"/mcp", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}
