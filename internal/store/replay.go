package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mcpsts/mcpsts/attest"
)

var _ attest.ReplayCache = (*Store)(nil)

// Claim implements attest.ReplayCache. Keys are stored as SHA-256 hashes,
// never in clear. An expired claim that the janitor has not yet swept is
// taken over in the same statement.
func (s *Store) Claim(ctx context.Context, key string, until time.Time) error {
	if key == "" {
		return errors.New("store: replay claim with an empty key")
	}
	now := s.now()
	if !until.After(now) {
		return fmt.Errorf("store: replay claim expires at %s, not after now (%s)", until.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	sum := sha256.Sum256([]byte(key))
	res, err := s.db.ExecContext(ctx, s.dialect.rebind(`
		INSERT INTO replay_keys (key_hash, expires_at) VALUES (?, ?)
		ON CONFLICT (key_hash) DO UPDATE SET expires_at = excluded.expires_at
		WHERE replay_keys.expires_at <= ?`),
		hex.EncodeToString(sum[:]), until.UnixMicro(), now.UnixMicro())
	if err != nil {
		return fmt.Errorf("store: replay claim: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: replay claim: %w", err)
	}
	if n == 0 {
		return attest.ErrReplayed
	}
	return nil
}

// SweepReplay deletes expired replay claims and reports how many it deleted.
func (s *Store) SweepReplay(ctx context.Context) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.dialect.rebind(
		`DELETE FROM replay_keys WHERE expires_at <= ?`), s.now().UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("store: sweep replay keys: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: sweep replay keys: %w", err)
	}
	return n, nil
}

// RunJanitor sweeps expired rows every interval until ctx is done. Sweep
// failures are logged and retried at the next tick; they never stop the
// janitor.
func (s *Store) RunJanitor(ctx context.Context, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := s.SweepReplay(ctx)
			if _, rerr := s.SweepRateLimits(ctx); rerr != nil && err == nil {
				err = rerr
			}
			switch {
			case err != nil && ctx.Err() == nil:
				log.Warn("store janitor: sweep failed", "error", err)
			case n > 0:
				log.Debug("store janitor: swept expired replay keys", "count", n)
			}
		}
	}
}
