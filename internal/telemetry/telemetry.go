// Package telemetry builds the OpenTelemetry tracer provider of the mcpsts
// server from the standard OTEL_* environment variables. It installs nothing
// globally: the caller decides what gets the provider.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// Options describe this process to the tracing backend.
type Options struct {
	ServiceVersion string
	InstanceID     string
	// Getenv reads the OTEL_* variables that select the exporter (the
	// exporters themselves read their endpoint settings from the process
	// environment).
	Getenv func(string) string
	// Exporter, when set, receives the spans in place of the one
	// OTEL_TRACES_EXPORTER selects (a load tool's, a test's).
	Exporter sdktrace.SpanExporter
}

// Provider is a configured tracer provider and meter provider, and the
// exporters they send to.
type Provider struct {
	*sdktrace.TracerProvider
	Meters *sdkmetric.MeterProvider
	// Exporter names what OTEL_TRACES_EXPORTER selected: otlp (with its
	// protocol), console or none.
	Exporter string
	// Exported is true when spans leave the process (Exporter is not
	// none). Without an exporter the only reader of spans is the audit
	// log, which needs a request's server span and not its steps.
	Exported bool
	// MetricsExporter names what OTEL_METRICS_EXPORTER selected.
	MetricsExporter string
	// Scrape serves every metric in the Prometheus text format; mount it
	// where only administrators reach it (there is no listener of its own).
	Scrape http.Handler
}

// Shutdown flushes and stops both providers.
func (p *Provider) Shutdown(ctx context.Context) error {
	return errors.Join(p.TracerProvider.Shutdown(ctx), p.Meters.Shutdown(ctx))
}

// New builds a tracer provider. The exporter is chosen by
// OTEL_TRACES_EXPORTER (otlp, console, none; unset means none, so that a
// server without a collector does not log export failures) and, for otlp,
// OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL (http/protobuf or grpc) and the other
// OTEL_EXPORTER_OTLP_* variables. OTEL_SDK_DISABLED=true turns tracing off.
// Spans are batched: a slow or absent collector drops spans, never delays
// a request. Call Shutdown to flush and stop.
func New(ctx context.Context, opts Options) (*Provider, error) {
	getenv := opts.Getenv
	name := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		name = "none"
	}
	if name == "" {
		name = "none"
	}
	exp := opts.Exporter
	var err error
	switch {
	case exp != nil:
		name = "given"
	case name == "none":
	case name == "otlp" || name == "console":
		exp, err = autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER=%s: %w", name, err)
		}
		if name == "otlp" {
			name += " (" + protocol(getenv) + ")"
		}
	default:
		return nil, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER=%q is not supported (want otlp, console or none)", name)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(
			semconv.ServiceName("mcpsts"),
			semconv.ServiceVersion(opts.ServiceVersion),
			semconv.ServiceInstanceID(opts.InstanceID),
		),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	registry := prom.NewRegistry()
	scrape, err := otelprom.New(otelprom.WithRegisterer(registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus: %w", err)
	}
	mpOpts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(scrape)}
	metrics := strings.TrimSpace(getenv("OTEL_METRICS_EXPORTER"))
	if metrics == "" || strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		metrics = "none"
	}
	switch metrics {
	case "none":
	case "otlp", "console":
		reader, err := autoexport.NewMetricReader(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTEL_METRICS_EXPORTER=%s: %w", metrics, err)
		}
		mpOpts = append(mpOpts, sdkmetric.WithReader(reader))
	case "prometheus":
		return nil, errors.New("telemetry: OTEL_METRICS_EXPORTER=prometheus would open a plaintext listener; mcpsts only listens over HTTPS: scrape /admin/v1/metrics, or use otlp")
	default:
		return nil, fmt.Errorf("telemetry: OTEL_METRICS_EXPORTER=%q is not supported (want otlp, console or none)", metrics)
	}
	meters := sdkmetric.NewMeterProvider(mpOpts...)
	// Every request is sampled, whatever the caller's traceparent says:
	// the spans are the audit trail, and a client must not switch it off.
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sdktrace.AlwaysSample())}
	if exp != nil {
		dropped, _ := meters.Meter("mcpsts").Int64Counter(metricDropped,
			metric.WithDescription("spans not delivered to the collector, by reason (queue_full, export_failed)"))
		exp = countingExporter{exp, dropped, metric.WithAttributes(attribute.String("reason", "export_failed"))}
		batch := sdktrace.NewBatchSpanProcessor(exp, sdktrace.WithBlocking())
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(newDroppingQueue(batch, queueSize, dropped)))
	}
	return &Provider{
		TracerProvider:  sdktrace.NewTracerProvider(tpOpts...),
		Meters:          meters,
		Exporter:        name,
		Exported:        exp != nil,
		MetricsExporter: metrics,
		Scrape:          promhttp.HandlerFor(registry, promhttp.HandlerOpts{}),
	}, nil
}

// queueSize bounds the spans waiting for the exporter.
const queueSize = 4096

func protocol(getenv func(string) string) string {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := getenv(k); v != "" {
			return v
		}
	}
	return "http/protobuf"
}
