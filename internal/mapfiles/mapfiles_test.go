package mapfiles_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/internal/mapfiles"
	"github.com/mcpsts/mcpsts/trustmaps"
)

const mapA = "id: a\nmatch: {provider: p, subject: s}\ngrant: {client_id: ca, audiences: [\"https://a.example/mcp\"]}\n"
const mapB = "id: b\nmatch: {provider: p, subject: t}\ngrant: {client_id: cb, audiences: [\"https://a.example/mcp\"]}\n"

func decide(p *trustmaps.Policy, subject string) error {
	_, err := p.Engine().Decide(context.Background(), attest.Identity{Provider: "p", Subject: subject}, trustmaps.Request{Audience: "https://a.example/mcp"})
	return err
}

// TestHotReload: a changed file is put in force; a bad new version is not,
// the old one stays, and the failure is logged and counted.
func TestHotReload(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(mapA), 0o600)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a map"), 0o600)
	var logs bytes.Buffer
	reader := sdkmetric.NewManualReader()
	p, err := trustmaps.NewPolicy(ctx, mapfiles.Files{dir}, slog.New(slog.NewTextHandler(&logs, nil)),
		sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("t"))
	if err != nil {
		t.Fatal(err)
	}
	if decide(p, "s") != nil || decide(p, "t") == nil {
		t.Fatal("first version not in force")
	}
	if changed, err := p.Reload(ctx); changed || err != nil {
		t.Fatalf("reload of unchanged files = %v, %v", changed, err)
	}

	os.WriteFile(filepath.Join(dir, "b.yml"), []byte(mapB), 0o600)
	if changed, err := p.Reload(ctx); !changed || err != nil {
		t.Fatalf("reload after adding b.yml = %v, %v", changed, err)
	}
	if decide(p, "t") != nil {
		t.Fatal("new map not in force")
	}

	os.WriteFile(filepath.Join(dir, "b.yml"), []byte(strings.Replace(mapB, "subject: t", "subject_pattern: '('", 1)), 0o600)
	changed, err := p.Reload(ctx)
	if changed || err == nil || !strings.Contains(err.Error(), `b.yml:2: map "b": match.subject_pattern: does not compile`) {
		t.Fatalf("reload of a bad file = %v, %v", changed, err)
	}
	if decide(p, "t") != nil || decide(p, "s") != nil {
		t.Fatal("a bad new version displaced the old one")
	}
	if !strings.Contains(logs.String(), "trust maps did not compile: the previous version stays in force") {
		t.Fatalf("no log line: %s", logs.String())
	}
	var rm metricdata.ResourceMetrics
	reader.Collect(ctx, &rm)
	if n := rm.ScopeMetrics[0].Metrics[0].Data.(metricdata.Sum[int64]).DataPoints[0].Value; n != 1 {
		t.Fatalf("reload_failures = %d, want 1", n)
	}

	os.WriteFile(filepath.Join(dir, "b.yml"), []byte(mapB), 0o600)
	if changed, err := p.Reload(ctx); !changed || err != nil {
		t.Fatalf("reload after the fix = %v, %v", changed, err)
	}
}

func TestFirstVersionMustCompile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("id: a\n"), 0o600)
	if _, err := trustmaps.NewPolicy(context.Background(), mapfiles.Files{dir}, nil, nil); err == nil {
		t.Fatal("a policy that does not compile was put in force at start")
	}
	if _, err := trustmaps.NewPolicy(context.Background(), mapfiles.Files{filepath.Join(dir, "none")}, nil, nil); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing path: %v", err)
	}
}
