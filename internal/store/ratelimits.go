package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/mcpsts/mcpsts/exchange"
)

var _ exchange.SharedLimits = (*Store)(nil)

// Take implements exchange.SharedLimits: one statement refills the bucket
// for the time since its last use, takes a token if there is one, and
// says how many are left, so that the replicas sharing the store share the
// bucket.
func (s *Store) Take(ctx context.Context, key string, rate float64, burst int, now time.Time) (bool, time.Duration, error) {
	us, perUS, b := now.UnixMicro(), rate/1e6, float64(burst)
	sum := sha256.Sum256([]byte(key)) // keys hold any bytes; the table holds their hashes
	key = hex.EncodeToString(sum[:])
	// Parameters cast: PostgreSQL would give a rate multiplied with a
	// BIGINT difference the BIGINT type.
	const f = "CAST(? AS DOUBLE PRECISION)"
	refilled := `CASE WHEN rate_buckets.tokens + (? - rate_buckets.updated_at) * ` + f + ` > ` + f + ` THEN ` + f +
		` ELSE rate_buckets.tokens + (? - rate_buckets.updated_at) * ` + f + ` END`
	var left float64
	err := s.db.QueryRowContext(ctx, s.dialect.rebind(`
		INSERT INTO rate_buckets (bucket, tokens, updated_at) VALUES (?, `+f+`, ?)
		ON CONFLICT (bucket) DO UPDATE SET tokens = `+refilled+` - 1, updated_at = ?
		WHERE `+refilled+` >= 1
		RETURNING tokens`),
		key, b-1, us,
		us, perUS, b, b, us, perUS, us,
		us, perUS, b, b, us, perUS).Scan(&left)
	switch {
	case err == nil:
		return true, 0, nil
	case !errors.Is(err, sql.ErrNoRows):
		return false, 0, fmt.Errorf("store: rate limit: %w", err)
	}
	// Empty: how long until a token is there.
	var tokens float64
	var at int64
	if err := s.db.QueryRowContext(ctx, s.dialect.rebind(`SELECT tokens, updated_at FROM rate_buckets WHERE bucket = ?`), key).Scan(&tokens, &at); err != nil {
		return false, 0, fmt.Errorf("store: rate limit: %w", err)
	}
	have := min(b, tokens+float64(us-at)*perUS)
	wait := time.Duration((1 - have) / rate * float64(time.Second))
	return false, max(wait, time.Millisecond), nil
}

// SweepRateLimits drops buckets untouched for an hour (full again long
// since): the table holds the last hour's callers only.
func (s *Store) SweepRateLimits(ctx context.Context) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.dialect.rebind(`DELETE FROM rate_buckets WHERE updated_at < ?`), s.now().Add(-time.Hour).UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("store: sweep rate limits: %w", err)
	}
	return res.RowsAffected()
}
