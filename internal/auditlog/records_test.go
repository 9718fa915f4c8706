package auditlog_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/internal/auditlog"
	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/impact"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

func decisionLine(i int) string {
	ns := fmt.Sprint("ns", i%10_000)
	return fmt.Sprintf(`{"event":"token.allow","time":"2026-11-23T10:00:00Z","seq":%d,"prev":"0000000000000000000000000000000000000000000000000000000000000000","trace_id":"4bf92f3577b34da6a3ce929d0e0e%04d","span_id":"69b1afb61f907e61","mcpsts.grant_type":"client_credentials","mcpsts.subject.kind":"oidc","mcpsts.subject.provider":"k8s","mcpsts.subject.issuer":"https://k8s.example","mcpsts.subject.id":"system:serviceaccount:%s:agent","mcpsts.request.audience":"https://files.example.com/mcp","mcpsts.request.scopes":"","mcpsts.trust_map.id":"m","mcpsts.client_id":"c","mcpsts.granted.audience":"https://files.example.com/mcp","mcpsts.granted.scopes":"files:read","mcpsts.replay.identity":"{\"kind\":\"oidc\",\"provider\":\"k8s\",\"issuer\":\"https://k8s.example\",\"subject\":\"system:serviceaccount:%s:agent\",\"attributes\":{\"namespace\":\"%s\"}}","mcpsts.replay.request":"{\"grant_type\":\"client_credentials\",\"audience\":\"https://files.example.com/mcp\",\"source_ip\":\"10.0.0.7\"}","mcpsts.replay.outcome":"{\"allowed\":true,\"map\":\"m\",\"client_id\":\"c\",\"audience\":\"https://files.example.com/mcp\",\"scopes\":[\"files:read\"]}","mcpsts.decision":"allow","mcpsts.token.jti":"hC4prDmcwo2HOWshvE-XOA","mcpsts.token.exp":1795651522,"mcpsts.token.binding":"","hash":"99d59545ea5ff59bf11c1da20dc300603d62e026720a5f72aba4bd0cab27abaf"}`+"\n",
		i+1, i%10_000, ns, ns, ns)
}

// TestRecords: decisions with the replay fields are replayable records,
// older ones are counted as not replayable, other events are skipped; a
// line that is not JSON, or a last line cut short, is an error naming it.
func TestRecords(t *testing.T) {
	old := `{"event":"token.allow","time":"2026-11-20T10:00:00Z","seq":2,"trace_id":"aa","mcpsts.subject.id":"x"}` + "\n"
	admin := `{"event":"admin.put","time":"2026-11-20T10:00:00Z","seq":3}` + "\n"
	log := decisionLine(0) + old + admin + decisionLine(1)
	var got []impact.Record
	for rec, err := range auditlog.Records(strings.NewReader(log)) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec)
	}
	if len(got) != 3 || !got[0].Replayable || got[1].Replayable || !got[2].Replayable || got[2].Line != 4 ||
		got[0].Identity.Attributes["namespace"] != "ns0" || got[0].Request.SourceIP != "10.0.0.7" || got[0].Outcome.MapID != "m" {
		t.Fatalf("records %+v", got)
	}
	for name, tc := range map[string]struct{ log, want string }{
		"not JSON":                {decisionLine(0) + "garbage\n", "audit log line 2: not a JSON audit record"},
		"cut short":               {decisionLine(0) + decisionLine(1)[:100], "audit log line 2: cut short"},
		"a replay field tampered": {strings.Replace(decisionLine(0), `"mcpsts.replay.request":"{`, `"mcpsts.replay.request":"[`, 1), "audit log line 1: a replay field"},
	} {
		var err error
		for _, e := range auditlog.Records(strings.NewReader(tc.log)) {
			if e != nil {
				err = e
			}
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// BenchmarkReplayAuditLines: 1,000,000 audit lines (generated and streamed,
// never all in memory) replayed against 10,000 maps. Run it on one core:
// GOMAXPROCS=1 go test ./internal/auditlog -run XXX -bench ReplayAuditLines -benchtime 1x
func BenchmarkReplayAuditLines(b *testing.B) {
	var sb strings.Builder
	for i := range 10_000 {
		fmt.Fprintf(&sb, "---\nid: m%d\nmatch: {provider: k8s, subject: \"system:serviceaccount:ns%d:agent\", conditions: ['identity.attributes.namespace == \"ns%d\"']}\ngrant: {client_id: c%d, audiences: [\"https://files.example.com/mcp\"], scopes: [files:read]}\n", i, i, i, i)
	}
	after, err := trustmaps.Compile(trustmaps.Document{Name: "maps.yaml", Data: []byte(sb.String())})
	if err != nil {
		b.Fatal(err)
	}
	const lines = 1_000_000
	pregenerated := make([]string, 10_000)
	for i := range pregenerated {
		pregenerated[i] = decisionLine(i)
	}
	for b.Loop() {
		pr, pw := io.Pipe()
		go func() {
			// The 10,000 identities' lines, made once: the generator's own
			// cost stays out of the figure.
			w := bufio.NewWriterSize(pw, 1<<20)
			for i := range lines {
				w.WriteString(pregenerated[i%len(pregenerated)])
			}
			w.Flush()
			pw.Close()
		}()
		rep, err := impact.Replay(context.Background(), auditlog.Records(pr), after, impact.Options{})
		if err != nil || rep.Replayed != lines {
			b.Fatalf("%+v %v", rep, err)
		}
	}
}

// TestLeanLines: a decision's line names its members without the mcpsts.
// prefix, leaves empty values out, holds the replay documents as JSON
// members (not quoted in strings), and is read back by Records, as lines in
// the older form are.
func TestLeanLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := auditlog.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ident := `{"kind":"oidc","provider":"k8s","subject":"agent","attributes":{"namespace":"apps"}}`
	l.Decision("token.allow", time.Now(), trace.SpanContext{}, []attribute.KeyValue{
		attribute.String("mcpsts.subject.id", "agent"), attribute.String("mcpsts.request.scopes", ""),
		attribute.String("mcpsts.replay.identity", ident),
		attribute.String("mcpsts.replay.request", `{"grant_type":"client_credentials","audience":"https://files.example.com/mcp"}`),
		attribute.String("mcpsts.replay.outcome", `{"allowed":true,"map":"m"}`),
		attribute.String("other.key", "not ours"),
	})
	l.Close()
	data, _ := os.ReadFile(path)
	line := string(data)
	for _, bad := range []string{`"mcpsts.`, `"request.scopes"`, `other.key`, `\"`} {
		if strings.Contains(line, bad) {
			t.Errorf("the line holds %s: %s", bad, line)
		}
	}
	if !strings.Contains(line, `"subject.id":"agent","replay.identity":`+ident+`,`) {
		t.Errorf("line %s", line)
	}
	var got []impact.Record
	for rec, err := range auditlog.Records(strings.NewReader(line + decisionLine(1))) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec)
	}
	if len(got) != 2 || !got[0].Replayable || got[0].Identity.Attributes["namespace"] != "apps" || got[0].Outcome.MapID != "m" || !got[1].Replayable {
		t.Fatalf("records %+v", got)
	}
	if n, _, err := auditlog.Verify(strings.NewReader(line), auditlog.Start{}); n != 1 || err != nil {
		t.Fatalf("verify: %d %v", n, err)
	}
}
