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

// Provider is a configured tracer provider and the exporter it sends to.
type Provider struct {
	*sdktrace.TracerProvider
	// Exporter names what OTEL_TRACES_EXPORTER selected: otlp (with its
	// protocol), console or none.
	Exporter string
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
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if exp != nil {
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
	}
	return &Provider{TracerProvider: sdktrace.NewTracerProvider(tpOpts...), Exporter: name}, nil
}

func protocol(getenv func(string) string) string {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := getenv(k); v != "" {
			return v
		}
	}
	return "http/protobuf"
}
