package server

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/mcpsts/mcpsts/internal/admin"
	"github.com/mcpsts/mcpsts/issuer"
)

// keyAgeGauge reports the age of the signing key in force.
func keyAgeGauge(m metric.Meter, iss *issuer.Issuer) error {
	age, err := m.Float64ObservableGauge("mcpsts.issuer.key.age", metric.WithUnit("s"),
		metric.WithDescription("how long ago the active signing key was made"))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		keys, err := iss.Keys(ctx)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k.State == issuer.StateActive {
				o.ObserveFloat64(age, time.Since(k.CreatedAt).Seconds(), metric.WithAttributes(attribute.String("kid", k.ID)))
			}
		}
		return nil
	}, age)
	return err
}

// auditEvent says which spans are audit events, and names them:
// administrative changes, refused administrative requests and key
// rotations. (The token endpoint writes its decisions itself.)
func auditEvent(s sdktrace.ReadOnlySpan) (string, bool) {
	var op, result string
	for _, kv := range s.Attributes() {
		switch kv.Key {
		case admin.AttrOperation:
			op = kv.Value.AsString()
		case admin.AttrResult:
			result = kv.Value.AsString()
		}
	}
	switch {
	case op == issuer.OperationRotate:
		return "keys.rotate", true
	case op != "" && (admin.IsChange(op) || result == "unauthenticated" || result == "forbidden"):
		return "admin." + op, true
	}
	return "", false
}
