package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/mcpsts/mcpsts/issuer"
)

var _ issuer.KeyStore = (*Store)(nil)

// Keys implements issuer.KeyStore.
func (s *Store) Keys(ctx context.Context) ([]issuer.KeyRecord, error) {
	return readKeys(ctx, s.db)
}

// UpdateKeys implements issuer.KeyStore: fn runs on the keys read inside the
// transaction that writes its change, under a lock that other updaters of
// any process wait for.
func (s *Store) UpdateKeys(ctx context.Context, fn func([]issuer.KeyRecord) (issuer.KeyChange, error)) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin key update: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := s.dialect.lock(ctx, tx, lockKeys); err != nil {
		return fmt.Errorf("store: lock keys: %w", err)
	}
	keys, err := readKeys(ctx, tx)
	if err != nil {
		return err
	}
	change, err := fn(keys)
	if err != nil {
		return err
	}
	for _, kid := range change.Remove {
		if _, err := tx.ExecContext(ctx, s.dialect.rebind(`DELETE FROM signing_keys WHERE kid = ?`), kid); err != nil {
			return fmt.Errorf("store: remove key %s: %w", kid, err)
		}
	}
	for _, k := range change.Add {
		if k.ID == "" || k.CreatedAt.IsZero() || k.ActivateAt.IsZero() {
			return errors.New("store: key record without an ID or times")
		}
		_, err := tx.ExecContext(ctx, s.dialect.rebind(`
			INSERT INTO signing_keys (kid, algorithm, backend, public_key, sealed_key, external_id, created_at, activate_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
			k.ID, string(k.Algorithm), k.Backend, b64(k.PublicKey), b64(k.Sealed), k.ExternalID,
			k.CreatedAt.UnixMicro(), k.ActivateAt.UnixMicro())
		if err != nil {
			return fmt.Errorf("store: add key %s: %w", k.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit key update: %w", err)
	}
	return nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func readKeys(ctx context.Context, q querier) ([]issuer.KeyRecord, error) {
	rows, err := q.QueryContext(ctx, `SELECT kid, algorithm, backend, public_key, sealed_key, external_id, created_at, activate_at
		FROM signing_keys ORDER BY activate_at, kid`)
	if err != nil {
		return nil, fmt.Errorf("store: read keys: %w", err)
	}
	defer rows.Close()
	var out []issuer.KeyRecord
	for rows.Next() {
		var k issuer.KeyRecord
		var alg, pub, sealed string
		var created, activate int64
		if err := rows.Scan(&k.ID, &alg, &k.Backend, &pub, &sealed, &k.ExternalID, &created, &activate); err != nil {
			return nil, fmt.Errorf("store: read keys: %w", err)
		}
		k.Algorithm = issuer.Algorithm(alg)
		if k.PublicKey, err = unb64(pub); err != nil {
			return nil, fmt.Errorf("store: key %s: public key: %w", k.ID, err)
		}
		if k.Sealed, err = unb64(sealed); err != nil {
			return nil, fmt.Errorf("store: key %s: sealed key: %w", k.ID, err)
		}
		k.CreatedAt, k.ActivateAt = time.UnixMicro(created).UTC(), time.UnixMicro(activate).UTC()
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read keys: %w", err)
	}
	return out, nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func unb64(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	return base64.StdEncoding.DecodeString(s)
}
