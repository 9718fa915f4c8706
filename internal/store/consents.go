package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/mcpsts/mcpsts/trustmaps/consent"
)

var _ consent.Store = (*Store)(nil)

// GrantConsent implements consent.Store.
func (s *Store) GrantConsent(ctx context.Context, c consent.Consent) (consent.Consent, error) {
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return consent.Consent{}, err
	}
	c.ID, c.CreatedAt, c.RevokedAt = hex.EncodeToString(id[:]), s.now().UTC().Truncate(time.Microsecond), time.Time{}
	c.ExpiresAt = c.ExpiresAt.UTC().Truncate(time.Microsecond)
	_, err := s.db.ExecContext(ctx, s.dialect.rebind(`
		INSERT INTO consents (id, provider, user_sub, client_id, scopes, resources, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
		c.ID, c.Provider, c.User, c.ClientID, strings.Join(c.Scopes, " "), strings.Join(c.Resources, " "),
		c.CreatedAt.UnixMicro(), c.ExpiresAt.UnixMicro())
	if err != nil {
		return consent.Consent{}, fmt.Errorf("store: grant consent: %w", err)
	}
	return c, nil
}

// Consents implements consent.Store.
func (s *Store) Consents(ctx context.Context, provider, user, clientID string) ([]consent.Consent, error) {
	q := `SELECT id, provider, user_sub, client_id, scopes, resources, created_at, expires_at, revoked_at FROM consents WHERE 1 = 1`
	var args []any
	for _, f := range []struct{ col, v string }{{"provider", provider}, {"user_sub", user}, {"client_id", clientID}} {
		if f.v != "" {
			q += " AND " + f.col + " = ?"
			args = append(args, f.v)
		}
	}
	rows, err := s.db.QueryContext(ctx, s.dialect.rebind(q+" ORDER BY created_at, id"), args...)
	if err != nil {
		return nil, fmt.Errorf("store: read consents: %w", err)
	}
	defer rows.Close()
	var out []consent.Consent
	for rows.Next() {
		var c consent.Consent
		var scopes, resources string
		var created, expires, revoked int64
		if err := rows.Scan(&c.ID, &c.Provider, &c.User, &c.ClientID, &scopes, &resources, &created, &expires, &revoked); err != nil {
			return nil, fmt.Errorf("store: read consents: %w", err)
		}
		c.Scopes, c.Resources = strings.Fields(scopes), strings.Fields(resources)
		c.CreatedAt, c.ExpiresAt = time.UnixMicro(created).UTC(), time.UnixMicro(expires).UTC()
		if revoked != 0 {
			c.RevokedAt = time.UnixMicro(revoked).UTC()
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// RevokeConsent implements consent.Store.
func (s *Store) RevokeConsent(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, s.dialect.rebind(`UPDATE consents SET revoked_at = ? WHERE id = ? AND revoked_at = 0`),
		s.now().UnixMicro(), id)
	if err != nil {
		return fmt.Errorf("store: revoke consent: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var exists int
		if err := s.db.QueryRowContext(ctx, s.dialect.rebind(`SELECT COUNT(*) FROM consents WHERE id = ?`), id).Scan(&exists); err == nil && exists > 0 {
			return nil // already revoked
		}
		return consent.ErrNotFound
	}
	// The refresh tokens the consent allowed go with it, on every replica
	// at once (their next use would be refused anyway: each checks the
	// consent again).
	var provider, user, client string
	if err := s.db.QueryRowContext(ctx, s.dialect.rebind(`SELECT provider, user_sub, client_id FROM consents WHERE id = ?`), id).Scan(&provider, &user, &client); err != nil {
		return fmt.Errorf("store: revoke consent: %w", err)
	}
	return s.RevokeGrants(ctx, provider, user, client)
}
