package store

import (
	"context"
	"fmt"
	"time"

	"github.com/mcpsts/mcpsts/exchange"
)

var _ exchange.Revocations = (*Store)(nil)

// Revoke implements exchange.Revocations: a second revocation of the same
// subject or client moves its time forward.
func (s *Store) Revoke(ctx context.Context, kind, value string, at, until time.Time) error {
	if _, err := s.db.ExecContext(ctx, s.dialect.rebind(`DELETE FROM token_revocations WHERE expires_at < ?`), s.now().UnixMicro()); err != nil {
		return fmt.Errorf("store: revoke: %w", err)
	}
	_, err := s.db.ExecContext(ctx, s.dialect.rebind(`
		INSERT INTO token_revocations (kind, value, revoked_at, expires_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (kind, value) DO UPDATE SET revoked_at = excluded.revoked_at, expires_at = excluded.expires_at`),
		kind, value, at.UnixMicro(), until.UnixMicro())
	if err != nil {
		return fmt.Errorf("store: revoke: %w", err)
	}
	return nil
}

// Revoked implements exchange.Revocations: one query over the token's jti,
// subject and client.
func (s *Store) Revoked(ctx context.Context, jti, subject, clientID string, issuedAt time.Time) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, s.dialect.rebind(`
		SELECT COUNT(*) FROM token_revocations WHERE expires_at >= ? AND (
			(kind = 'jti' AND value = ?) OR
			(kind = 'subject' AND value = ? AND revoked_at >= ?) OR
			(kind = 'client' AND value = ? AND revoked_at >= ?))`),
		s.now().UnixMicro(), jti, subject, issuedAt.UnixMicro(), clientID, issuedAt.UnixMicro()).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("store: revocations: %w", err)
	}
	return n > 0, nil
}
