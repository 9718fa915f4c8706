package issuer

import (
	"context"
	"encoding/base64"
	"encoding/json"
)

// SignForTest signs payload under header with the active key, its alg and
// kid set in header: tokens that differ from Mint's in one respect, and
// carry a valid signature, so that a test fails on that respect alone.
func SignForTest(i *Issuer, header map[string]any, payload []byte) (string, error) {
	key, err := i.keys.Load().signer(i.now())
	if err != nil {
		return "", err
	}
	header["alg"], header["kid"] = string(key.signer.Algorithm()), key.signer.KeyID()
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	b64 := base64.RawURLEncoding
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(payload)
	sig, err := key.signer.Sign(context.Background(), []byte(input))
	if err != nil {
		return "", err
	}
	return input + "." + b64.EncodeToString(sig), nil
}
