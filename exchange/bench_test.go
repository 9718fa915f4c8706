package exchange_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/internal/auditlog"
)

// BenchmarkAuditCost measures a token exchange of a repeated (cached)
// subject token in-process, with the audit pieces added one by one: the
// server span and its step spans feeding the audit log, the metrics, a
// batch exporter to a collector. Run with -cpu 1 to see their CPU cost
// (the audit log's writer shares the one core).
func BenchmarkAuditCost(b *testing.B) {
	e := newEnv(b)
	// Not single-use, so that a repeated token is verified from cache.
	cached, err := oidc.New(func() time.Time { return e.now }, oidc.ProviderConfig{Keys: e.prov, Audiences: []string{broker}})
	if err != nil {
		b.Fatal(err)
	}
	filter := func(s sdktrace.ReadOnlySpan) (string, bool) {
		for _, kv := range s.Attributes() {
			if kv.Key == "mcpsts.decision" {
				return "token." + kv.Value.AsString(), true
			}
		}
		return "", false
	}
	for _, bc := range []struct {
		name                    string
		log, metrics, collector bool
	}{
		{"off", false, false, false},
		{"spans+log", true, false, false},                 // the default: no collector, the spans feed the audit log
		{"spans+log+metrics", true, true, false},          // and metrics
		{"spans+log+metrics+collector", true, true, true}, // and a batch exporter (that drops the spans)
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := e.cfg
			cfg.Attestors = map[string]attest.Attestor{exchange.TokenTypeJWT: cached}
			cfg.Tracer, cfg.Meter = nil, nil
			if bc.log {
				l, err := auditlog.Open(filepath.Join(b.TempDir(), "audit.log"), nil)
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				opts := []sdktrace.TracerProviderOption{sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(l.Processor(filter))}
				if bc.collector {
					opts = append(opts, sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				}
				tp := sdktrace.NewTracerProvider(opts...)
				defer tp.Shutdown(context.Background())
				cfg.Tracer = tp.Tracer("mcpsts")
			}
			if bc.metrics {
				cfg.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())).Meter("mcpsts")
			}
			h := exchange.NewHandler(cfg)
			body := exchangeForm(e.subjectToken(mainSub, nil)).Encode()
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatal(w.Body.String())
				}
			}
		})
	}
}
