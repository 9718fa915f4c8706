// Package telemetry builds the OpenTelemetry tracer provider of the mcpsts
// server from the standard OTEL_* environment variables. It installs nothing
// globally: the caller decides what gets the provider.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
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
}

// Provider is a configured tracer provider and meter provider, and the
// exporters they send to.
type Provider struct {
	*sdktrace.TracerProvider
	Meters *sdkmetric.MeterProvider
	// Exporter names what OTEL_TRACES_EXPORTER selected: otlp (with its
	// protocol), console or none.
	Exporter string
	// MetricsExporter names what OTEL_METRICS_EXPORTER selected.
	MetricsExporter string
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
	var exp sdktrace.SpanExporter
	var err error
	switch name {
	case "none":
		exp = nil
	case "otlp", "console":
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
	mpOpts := []sdkmetric.Option{sdkmetric.WithResource(res)}
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
		return nil, errors.New("telemetry: OTEL_METRICS_EXPORTER=prometheus would open a plaintext listener; mcpsts only listens over HTTPS: use otlp")
	default:
		return nil, fmt.Errorf("telemetry: OTEL_METRICS_EXPORTER=%q is not supported (want otlp, console or none)", metrics)
	}
	// Every request is sampled, whatever the caller's traceparent says:
	// the spans are the audit trail, and a client must not switch it off.
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sdktrace.AlwaysSample())}
	if exp != nil {
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
	}
	return &Provider{
		TracerProvider:  sdktrace.NewTracerProvider(tpOpts...),
		Meters:          sdkmetric.NewMeterProvider(mpOpts...),
		Exporter:        name,
		MetricsExporter: metrics,
	}, nil
}

func protocol(getenv func(string) string) string {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := getenv(k); v != "" {
			return v
		}
	}
	return "http/protobuf"
}
