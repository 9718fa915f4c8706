package telemetry

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// collector records what OTLP exporters send it, over HTTP and gRPC.
type collector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu       sync.Mutex
	received []string // span names
	resource []string // service.name values
}

func (c *collector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, a := range rs.Resource.Attributes {
			if a.Key == "service.name" {
				c.resource = append(c.resource, a.Value.GetStringValue())
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.received = append(c.received, s.Name)
				for _, a := range s.Attributes {
					c.received = append(c.received, s.Name+"."+a.Key+"="+a.Value.GetStringValue())
				}
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (c *collector) spans() ([]string, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.received...), append([]string(nil), c.resource...)
}

func emit(t *testing.T, p *Provider, name string) {
	t.Helper()
	_, span := p.Tracer("test").Start(context.Background(), name)
	span.SetAttributes(attribute.String("mcpsts.decision", "allow"))
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func clearOTELEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "OTEL_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

// TestOTLPHTTP: spans and metrics reach a loopback OTLP/HTTP receiver,
// which decodes the trace protobuf.
func TestOTLPHTTP(t *testing.T) {
	clearOTELEnv(t)
	c := &collector{}
	var mu sync.Mutex
	var paths []string
	var metricsBody []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		switch r.URL.Path {
		case "/v1/traces":
			var req collectortrace.ExportTraceServiceRequest
			if err := proto.Unmarshal(b, &req); err != nil {
				t.Errorf("traces: %v", err)
			}
			c.Export(r.Context(), &req)
		case "/v1/metrics":
			mu.Lock()
			metricsBody = append(metricsBody, b...)
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_METRICS_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)

	p, err := New(context.Background(), Options{ServiceVersion: "v9.9.9", InstanceID: "replica-1", Getenv: os.Getenv})
	if err != nil {
		t.Fatal(err)
	}
	if p.Exporter != "otlp (http/protobuf)" || p.MetricsExporter != "otlp" {
		t.Errorf("Exporter = %q, MetricsExporter = %q", p.Exporter, p.MetricsExporter)
	}
	counter, _ := p.Meters.Meter("test").Int64Counter("mcpsts.test.counter")
	counter.Add(context.Background(), 3)
	emit(t, p, "token-exchange")
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(paths, ",") != "/v1/traces,/v1/metrics" && strings.Join(paths, ",") != "/v1/metrics,/v1/traces" {
		t.Fatalf("collector got %v, want a POST to /v1/traces and one to /v1/metrics", paths)
	}
	spans, services := c.spans()
	if strings.Join(spans, ",") != "token-exchange,token-exchange.mcpsts.decision=allow" || strings.Join(services, ",") != "mcpsts" {
		t.Fatalf("decoded spans %v, services %v", spans, services)
	}
	if !strings.Contains(string(metricsBody), "mcpsts.test.counter") {
		t.Error("exported metrics lack mcpsts.test.counter")
	}
}

func TestOTLPGRPC(t *testing.T) {
	clearOTELEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, c)
	go gs.Serve(ln)
	defer gs.Stop()
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	t.Setenv("OTEL_SERVICE_NAME", "mcpsts-eu")

	p, err := New(context.Background(), Options{ServiceVersion: "dev", Getenv: os.Getenv})
	if err != nil {
		t.Fatal(err)
	}
	if p.Exporter != "otlp (grpc)" {
		t.Errorf("Exporter = %q", p.Exporter)
	}
	emit(t, p, "mint")
	spans, services := c.spans()
	if len(spans) != 2 || spans[0] != "mint" {
		t.Fatalf("collector got spans %v, want [mint]", spans)
	}
	if services[0] != "mcpsts-eu" {
		t.Errorf("service.name = %q, want OTEL_SERVICE_NAME to win", services[0])
	}
}

func TestExporterSelection(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"unset means none", map[string]string{}, "none", ""},
		{"none", map[string]string{"OTEL_TRACES_EXPORTER": "none"}, "none", ""},
		{"console", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, "console", ""},
		{"sdk disabled", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, "none", ""},
		{"unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "", `OTEL_TRACES_EXPORTER="zipkin" is not supported`},
		{"unknown protocol", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}, "", "OTEL_TRACES_EXPORTER=otlp"},
		{"prometheus metrics refused", map[string]string{"OTEL_METRICS_EXPORTER": "prometheus"}, "", "would open a plaintext listener"},
		{"unknown metrics exporter", map[string]string{"OTEL_METRICS_EXPORTER": "statsd"}, "", `OTEL_METRICS_EXPORTER="statsd" is not supported`},
		{"console metrics", map[string]string{"OTEL_METRICS_EXPORTER": "console"}, "none", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearOTELEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			p, err := New(context.Background(), Options{Getenv: os.Getenv})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.Shutdown(context.Background())
			if p.Exporter != tt.want {
				t.Fatalf("Exporter = %q, want %q", p.Exporter, tt.want)
			}
		})
	}
}

// TestCollectorDown: with a collector that drops every connection, spans
// are still ended and the provider still shuts down within its context;
// requests never wait on it.
func TestCollectorDown(t *testing.T) {
	clearOTELEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+addr)
	p, err := New(context.Background(), Options{Getenv: os.Getenv})
	if err != nil {
		t.Fatal(err)
	}
	tr := p.Tracer("test")
	start := time.Now()
	for range 20000 {
		_, s := tr.Start(context.Background(), "x")
		s.End()
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("ending 20000 spans took %s: the request path waited on the collector", d)
	}
	// The spans that found the queue full are counted, in the metrics an
	// administrator scrapes.
	rec := httptest.NewRecorder()
	p.Scrape.ServeHTTP(rec, httptest.NewRequest("GET", "/admin/v1/metrics", nil))
	m := regexp.MustCompile(`mcpsts_telemetry_spans_dropped_total\{[^}]*reason="queue_full"[^}]*\} (\d+)`).FindStringSubmatch(rec.Body.String())
	if m == nil || m[1] == "0" {
		t.Fatalf("no queue_full drops counted:\n%s", rec.Body.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { p.Shutdown(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return after its context expired")
	}
}
