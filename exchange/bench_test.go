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
	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/internal/auditlog"
)

// BenchmarkAuditCost measures a token exchange of a repeated (cached)
// subject token in-process, audit off against audit on as the server runs
// it: every decision a line of the audit log and metrics recorded; with no
// exporter (the default) no spans; with one, a server span and a span per
// step, batched to an exporter (one that drops them). Each iteration
// serves one request with audit off and one with it on, alternately, so
// that both see the same machine; it reports both times and their ratio.
// Run with -cpu 1 (the audit log's writer shares the one core; its time
// falls in either request, which understates the cost a little: the load
// tool measures the server's CPU time instead).
func BenchmarkAuditCost(b *testing.B) {
	e := newEnv(b)
	// Not single-use, so that a repeated token is verified from cache.
	cached, err := oidc.NewVerifier(oidc.Options{Now: e.clock, CacheEntries: 1000}, oidc.ProviderConfig{Keys: e.prov, Audiences: []string{broker}})
	if err != nil {
		b.Fatal(err)
	}
	handler := func(b *testing.B, audit, spans, collector bool) http.Handler {
		cfg := e.cfg
		cfg.Attestors = map[string]attest.Attestor{exchange.TokenTypeJWT: cached}
		cfg.Tracer = nil
		if audit {
			l, err := auditlog.Open(filepath.Join(b.TempDir(), "audit.log"), nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { l.Close() })
			cfg.Audit = l
			cfg.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())).Meter("mcpsts")
			if spans {
				opts := []sdktrace.TracerProviderOption{sdktrace.WithSampler(sdktrace.AlwaysSample()),
					sdktrace.WithSpanProcessor(l.Processor(func(sdktrace.ReadOnlySpan) (string, bool) { return "", false }))} // admin changes only
				if collector {
					opts = append(opts, sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				}
				tp := sdktrace.NewTracerProvider(opts...)
				b.Cleanup(func() { tp.Shutdown(context.Background()) })
				cfg.Tracer = tp.Tracer("mcpsts")
			}
		}
		return exchange.NewHandler(cfg)
	}
	body := exchangeForm(e.subjectToken(mainSub, nil)).Encode()
	serve := func(b *testing.B, h http.Handler) time.Duration { return timedServe(b, h, body, "") }
	for _, bc := range []struct {
		name             string
		spans, collector bool
	}{
		{"log+metrics", false, false},               // the server's default: no exporter, no spans
		{"spans+log+metrics", true, false},          // spans recorded (an exporter's processor left out)
		{"spans+log+metrics+collector", true, true}, // and batched to an exporter
	} {
		b.Run(bc.name, func(b *testing.B) {
			off, on := handler(b, false, false, false), handler(b, true, bc.spans, bc.collector)
			var tOff, tOn time.Duration
			b.ReportAllocs()
			for b.Loop() {
				tOff += serve(b, off)
				tOn += serve(b, on)
			}
			b.ReportMetric(float64(tOff.Nanoseconds())/float64(b.N), "off-ns/op")
			b.ReportMetric(float64(tOn.Nanoseconds())/float64(b.N), "on-ns/op")
			b.ReportMetric(float64(tOff)/float64(tOn), "off/on")
		})
	}
}

// BenchmarkDPoPCost measures token exchanges of distinct subject tokens,
// without and with a DPoP proof (one more ES256 verification and a
// replay-cache write), alternately, in-process; it reports both times and
// their ratio (the figure: at least 0.75 on one core, -cpu 1). Tokens and
// proofs are made outside the timed part.
func BenchmarkDPoPCost(b *testing.B) {
	e := newEnv(b)
	v, err := oidc.NewVerifier(oidc.Options{Now: e.clock}, oidc.ProviderConfig{Keys: e.prov, Audiences: []string{broker}})
	if err != nil {
		b.Fatal(err)
	}
	cfg := e.cfg
	cfg.Attestors = map[string]attest.Attestor{exchange.TokenTypeJWT: v}
	cfg.Tracer, cfg.TokenURL = nil, tokenURL
	cfg.DPoP = &dpop.Verifier{Replay: &memCache{held: map[string]time.Time{}}, Clock: e.clock}
	h := exchange.NewHandler(cfg)
	const pool = 512
	tokens := make([]string, pool)
	for i := range tokens {
		tokens[i] = e.subjectToken(mainSub, nil)
	}
	key, _ := dpop.GenerateKey()
	signer, _ := dpop.NewSigner(key, e.clock)
	serve := func(b *testing.B, body, proof string) time.Duration { return timedServe(b, h, body, proof) }
	var tOff, tOn time.Duration
	i := 0
	for b.Loop() {
		body := exchangeForm(tokens[i%pool]).Encode()
		proof, _ := signer.Proof("POST", tokenURL, "", "")
		tOff += serve(b, body, "")
		tOn += serve(b, body, proof)
		i++
	}
	b.ReportMetric(float64(tOff.Nanoseconds())/float64(b.N), "bearer-ns/op")
	b.ReportMetric(float64(tOn.Nanoseconds())/float64(b.N), "dpop-ns/op")
	b.ReportMetric(float64(tOff)/float64(tOn), "bearer/dpop")
}

// timedServe serves one token request in-process (with a DPoP proof when
// given) and times it; anything but 200 fails the benchmark.
func timedServe(b *testing.B, h http.Handler, body, proof string) time.Duration {
	r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if proof != "" {
		r.Header.Set("DPoP", proof)
	}
	w := httptest.NewRecorder()
	t0 := time.Now()
	h.ServeHTTP(w, r)
	d := time.Since(t0)
	if w.Code != 200 {
		b.Fatal(w.Body.String())
	}
	return d
}

// BenchmarkTokenEndpoint serves one full token exchange per iteration,
// in-process, as the server runs it (audit log and metrics on, no spans):
// with distinct subject tokens (each verified) and with one repeated token
// (the verified-token cache answers). Its allocations per request are the
// figure of issue 24 (go test -bench TokenEndpoint -benchmem -cpu 1).
func BenchmarkTokenEndpoint(b *testing.B) {
	e := newEnv(b)
	v, err := oidc.NewVerifier(oidc.Options{Now: e.clock, CacheEntries: 10_000}, oidc.ProviderConfig{Keys: e.prov, Audiences: []string{broker}})
	if err != nil {
		b.Fatal(err)
	}
	l, err := auditlog.Open(filepath.Join(b.TempDir(), "audit.log"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	cfg := e.cfg
	cfg.Attestors = map[string]attest.Attestor{exchange.TokenTypeJWT: v}
	cfg.Tracer, cfg.Audit = nil, l
	cfg.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())).Meter("mcpsts")
	h := exchange.NewHandler(cfg)
	const pool = 2048
	bodies := make([]string, pool)
	for i := range bodies {
		bodies[i] = exchangeForm(e.subjectToken(mainSub, nil)).Encode()
	}
	b.Run("distinct", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			timedServe(b, h, bodies[i%pool], "")
			i++
		}
	})
	b.Run("repeated", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			timedServe(b, h, bodies[0], "")
		}
	})
}
