package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mcpsts/mcpsts/exchange/authorize"
)

var _ authorize.Store = (*Store)(nil)

// SaveCode implements authorize.Store.
func (s *Store) SaveCode(ctx context.Context, c authorize.Code) error {
	person, err := personJSON(c.Person)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, s.dialect.rebind(`
		INSERT INTO authorization_codes (code_hash, client_id, redirect_uri, code_challenge, resource, scopes, provider, user_sub, ttl_seconds, family, jkt, expires_at, identity)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		c.Hash, c.ClientID, c.RedirectURI, c.Challenge, c.Resource, strings.Join(c.Scopes, " "), c.Provider, c.Subject,
		int64(c.TTL/time.Second), c.Family, c.JKT, c.ExpiresAt.UnixMicro(), person)
	if err != nil {
		return fmt.Errorf("store: save authorization code: %w", err)
	}
	return nil
}

// RedeemCode implements authorize.Store: one UPDATE claims the code, so a
// code is redeemed once across every process on the store.
func (s *Store) RedeemCode(ctx context.Context, hash string) (authorize.Code, error) {
	res, err := s.db.ExecContext(ctx, s.dialect.rebind(`UPDATE authorization_codes SET used_at = ? WHERE code_hash = ? AND used_at = 0`),
		s.now().UnixMicro(), hash)
	if err != nil {
		return authorize.Code{}, fmt.Errorf("store: redeem authorization code: %w", err)
	}
	claimed, _ := res.RowsAffected()
	var c authorize.Code
	var scopes, person string
	var ttl, expires, accessExpires int64
	err = s.db.QueryRowContext(ctx, s.dialect.rebind(`
		SELECT code_hash, client_id, redirect_uri, code_challenge, resource, scopes, provider, user_sub, ttl_seconds, family, jkt, expires_at,
			identity, access_jti, access_expires_at
		FROM authorization_codes WHERE code_hash = ?`), hash).
		Scan(&c.Hash, &c.ClientID, &c.RedirectURI, &c.Challenge, &c.Resource, &scopes, &c.Provider, &c.Subject, &ttl, &c.Family, &c.JKT, &expires,
			&person, &c.AccessJTI, &accessExpires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return authorize.Code{}, authorize.ErrNotFound
	case err != nil:
		return authorize.Code{}, fmt.Errorf("store: read authorization code: %w", err)
	}
	c.Scopes, c.TTL, c.ExpiresAt = strings.Fields(scopes), time.Duration(ttl)*time.Second, time.UnixMicro(expires).UTC()
	if accessExpires != 0 {
		c.AccessExpiresAt = time.UnixMicro(accessExpires).UTC()
	}
	if c.Person, err = parsePerson(person); err != nil {
		return authorize.Code{}, err
	}
	if claimed == 0 {
		return c, authorize.ErrReused
	}
	return c, nil
}

// RecordAccess implements authorize.Store.
func (s *Store) RecordAccess(ctx context.Context, hash, jti string, expiresAt time.Time) error {
	_, err := s.db.ExecContext(ctx, s.dialect.rebind(`UPDATE authorization_codes SET access_jti = ?, access_expires_at = ? WHERE code_hash = ?`),
		jti, expiresAt.UnixMicro(), hash)
	if err != nil {
		return fmt.Errorf("store: record a code's access token: %w", err)
	}
	return nil
}

// personJSON and parsePerson keep a grant's person as JSON ("" for none).
func personJSON(p authorize.Person) (string, error) {
	if p.Issuer == "" && len(p.Attributes) == 0 {
		return "", nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("store: a grant's person: %w", err)
	}
	return string(b), nil
}

func parsePerson(s string) (authorize.Person, error) {
	var p authorize.Person
	if s == "" {
		return p, nil
	}
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return p, fmt.Errorf("store: a grant's person: %w", err)
	}
	return p, nil
}

// SaveRefresh implements authorize.Store.
func (s *Store) SaveRefresh(ctx context.Context, r authorize.Refresh) error {
	return saveRefresh(ctx, s.db, s.dialect, r)
}

// execer is what saveRefresh needs of a database or a transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func saveRefresh(ctx context.Context, db execer, d dialect, r authorize.Refresh) error {
	person, err := personJSON(r.Person)
	if err != nil {
		return err
	}
	var familyEnd int64
	if !r.FamilyExpiresAt.IsZero() {
		familyEnd = r.FamilyExpiresAt.UnixMicro()
	}
	_, err = db.ExecContext(ctx, d.rebind(`
		INSERT INTO refresh_tokens (token_hash, family, client_id, resource, scopes, provider, user_sub, ttl_seconds, jkt, expires_at, identity, family_expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		r.Hash, r.Family, r.ClientID, r.Resource, strings.Join(r.Scopes, " "), r.Provider, r.Subject, int64(r.TTL/time.Second), r.JKT, r.ExpiresAt.UnixMicro(),
		person, familyEnd)
	if err != nil {
		return fmt.Errorf("store: save refresh token: %w", err)
	}
	return nil
}

// RotateRefresh implements authorize.Store: the token is claimed and its
// successor stored in one transaction.
func (s *Store) RotateRefresh(ctx context.Context, hash, nextHash string, nextExpiry time.Time) (authorize.Refresh, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return authorize.Refresh{}, fmt.Errorf("store: rotate refresh token: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, s.dialect.rebind(`UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ? AND used_at = 0 AND revoked_at = 0`),
		s.now().UnixMicro(), hash)
	if err != nil {
		return authorize.Refresh{}, fmt.Errorf("store: rotate refresh token: %w", err)
	}
	claimed, _ := res.RowsAffected()
	r, _, revoked, err := readRefresh(ctx, tx, s.dialect, hash)
	if err != nil {
		return authorize.Refresh{}, err
	}
	switch {
	case revoked != 0:
		return authorize.Refresh{}, authorize.ErrNotFound
	case claimed == 0:
		return r, authorize.ErrReused
	}
	next := r
	next.Hash, next.ExpiresAt = nextHash, nextExpiry
	if !r.FamilyExpiresAt.IsZero() && r.FamilyExpiresAt.Before(nextExpiry) {
		next.ExpiresAt = r.FamilyExpiresAt // the family's absolute end
	}
	if err := saveRefresh(ctx, tx, s.dialect, next); err != nil {
		return authorize.Refresh{}, err
	}
	if err := tx.Commit(); err != nil {
		return authorize.Refresh{}, fmt.Errorf("store: rotate refresh token: %w", err)
	}
	return r, nil
}

// LookupRefresh implements authorize.Store.
func (s *Store) LookupRefresh(ctx context.Context, hash string) (authorize.Refresh, error) {
	r, used, revoked, err := readRefresh(ctx, s.db, s.dialect, hash)
	switch {
	case err != nil:
		return authorize.Refresh{}, err
	case used != 0 || revoked != 0:
		return authorize.Refresh{}, authorize.ErrNotFound
	}
	return r, nil
}

// queryer is what readRefresh needs of a database or a transaction.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// readRefresh reads a refresh token's grant and when it was used and
// revoked (0: not); ErrNotFound when there is none.
func readRefresh(ctx context.Context, db queryer, d dialect, hash string) (r authorize.Refresh, used, revoked int64, err error) {
	var scopes, person string
	var ttl, expires, familyEnd int64
	err = db.QueryRowContext(ctx, d.rebind(`
		SELECT token_hash, family, client_id, resource, scopes, provider, user_sub, ttl_seconds, jkt, expires_at, used_at, revoked_at, identity, family_expires_at
		FROM refresh_tokens WHERE token_hash = ?`), hash).
		Scan(&r.Hash, &r.Family, &r.ClientID, &r.Resource, &scopes, &r.Provider, &r.Subject, &ttl, &r.JKT, &expires, &used, &revoked, &person, &familyEnd)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return authorize.Refresh{}, 0, 0, authorize.ErrNotFound
	case err != nil:
		return authorize.Refresh{}, 0, 0, fmt.Errorf("store: read refresh token: %w", err)
	}
	r.Scopes, r.TTL, r.ExpiresAt = strings.Fields(scopes), time.Duration(ttl)*time.Second, time.UnixMicro(expires).UTC()
	if familyEnd != 0 {
		r.FamilyExpiresAt = time.UnixMicro(familyEnd).UTC()
	}
	if r.Person, err = parsePerson(person); err != nil {
		return authorize.Refresh{}, 0, 0, err
	}
	return r, used, revoked, nil
}

// RevokeFamily implements authorize.Store.
func (s *Store) RevokeFamily(ctx context.Context, family string) error {
	_, err := s.db.ExecContext(ctx, s.dialect.rebind(`UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at = 0`),
		s.now().UnixMicro(), family)
	if err != nil {
		return fmt.Errorf("store: revoke refresh tokens: %w", err)
	}
	return nil
}

var _ authorize.FlowStore = (*Store)(nil)

// flowRetention is how long a flow is kept after it expired or was taken,
// so that a late second use is told apart from an unknown key.
const flowRetention = time.Hour

// SaveFlow implements authorize.FlowStore; it also drops flows long
// expired, so the table holds only the last hour's.
func (s *Store) SaveFlow(ctx context.Context, key string, f authorize.Flow) error {
	data, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("store: save browser flow: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, s.dialect.rebind(`DELETE FROM browser_flows WHERE expires_at < ?`),
		s.now().Add(-flowRetention).UnixMicro()); err != nil {
		return fmt.Errorf("store: drop expired browser flows: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, s.dialect.rebind(`INSERT INTO browser_flows (key_hash, data, expires_at) VALUES (?, ?, ?)`),
		key, string(data), f.ExpiresAt.UnixMicro()); err != nil {
		return fmt.Errorf("store: save browser flow: %w", err)
	}
	return nil
}

// TakeFlow implements authorize.FlowStore: one UPDATE claims the key.
func (s *Store) TakeFlow(ctx context.Context, key string) (authorize.Flow, error) {
	res, err := s.db.ExecContext(ctx, s.dialect.rebind(`UPDATE browser_flows SET taken_at = ? WHERE key_hash = ? AND taken_at = 0`),
		s.now().UnixMicro(), key)
	if err != nil {
		return authorize.Flow{}, fmt.Errorf("store: take browser flow: %w", err)
	}
	claimed, _ := res.RowsAffected()
	var data string
	err = s.db.QueryRowContext(ctx, s.dialect.rebind(`SELECT data FROM browser_flows WHERE key_hash = ?`), key).Scan(&data)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return authorize.Flow{}, authorize.ErrNotFound
	case err != nil:
		return authorize.Flow{}, fmt.Errorf("store: read browser flow: %w", err)
	case claimed == 0:
		return authorize.Flow{}, authorize.ErrReused
	}
	var f authorize.Flow
	if err := json.Unmarshal([]byte(data), &f); err != nil {
		return authorize.Flow{}, fmt.Errorf("store: read browser flow: %w", err)
	}
	return f, nil
}

// PeekFlow implements authorize.FlowStore.
func (s *Store) PeekFlow(ctx context.Context, key string) (authorize.Flow, error) {
	var data string
	var taken int64
	err := s.db.QueryRowContext(ctx, s.dialect.rebind(`SELECT data, taken_at FROM browser_flows WHERE key_hash = ?`), key).Scan(&data, &taken)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return authorize.Flow{}, authorize.ErrNotFound
	case err != nil:
		return authorize.Flow{}, fmt.Errorf("store: read browser flow: %w", err)
	case taken != 0:
		return authorize.Flow{}, authorize.ErrReused
	}
	var f authorize.Flow
	if err := json.Unmarshal([]byte(data), &f); err != nil {
		return authorize.Flow{}, fmt.Errorf("store: read browser flow: %w", err)
	}
	return f, nil
}

// RevokeGrants implements authorize.FlowStore.
func (s *Store) RevokeGrants(ctx context.Context, provider, subject, clientID string) error {
	_, err := s.db.ExecContext(ctx, s.dialect.rebind(`UPDATE refresh_tokens SET revoked_at = ? WHERE provider = ? AND user_sub = ? AND client_id = ? AND revoked_at = 0`),
		s.now().UnixMicro(), provider, subject, clientID)
	if err != nil {
		return fmt.Errorf("store: revoke refresh tokens: %w", err)
	}
	return nil
}
