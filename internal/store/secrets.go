package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
)

// SharedSecret returns the 32-byte secret named name that every process on
// this store shares, made by the first to ask (the key of the DPoP nonces
// that any replica must accept). It is kept as is: it guards freshness,
// not access.
func (s *Store) SharedSecret(ctx context.Context, name string) ([]byte, error) {
	var b [32]byte
	rand.Read(b[:])
	fresh := base64.StdEncoding.EncodeToString(b[:])
	if _, err := s.db.ExecContext(ctx, s.dialect.rebind(`INSERT INTO shared_secrets (name, secret, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`),
		name, fresh, s.now().UnixMicro()); err != nil {
		return nil, fmt.Errorf("store: shared secret %s: %w", name, err)
	}
	var secret string
	if err := s.db.QueryRowContext(ctx, s.dialect.rebind(`SELECT secret FROM shared_secrets WHERE name = ?`), name).Scan(&secret); err != nil {
		return nil, fmt.Errorf("store: shared secret %s: %w", name, err)
	}
	key, err := base64.StdEncoding.DecodeString(secret)
	if err != nil {
		return nil, fmt.Errorf("store: shared secret %s: %w", name, err)
	}
	return key, nil
}
