package federation_test

import (
	"crypto"
	"encoding/base64"

	"go.opentelemetry.io/otel/attribute"
)

func attrKey(k string) attribute.Key { return attribute.Key(k) }

func publicEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

func b64lines(der []byte) string {
	s := base64.StdEncoding.EncodeToString(der)
	var out string
	for len(s) > 64 {
		out += s[:64] + "\n"
		s = s[64:]
	}
	return out + s + "\n"
}
