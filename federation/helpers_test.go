package federation_test

import (
	"crypto"

	"go.opentelemetry.io/otel/attribute"
)

func attrKey(k string) attribute.Key { return attribute.Key(k) }

func publicEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}
