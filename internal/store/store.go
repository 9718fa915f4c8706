// Package store is the one SQL implementation of mcpsts's storage interfaces,
// on SQLite (the embedded default, pure Go) or PostgreSQL (shared by
// replicas). Migrations are embedded and applied by Open.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite" // also registers the "sqlite" database/sql driver
)

// Store is safe for concurrent use, by goroutines and, on PostgreSQL, by
// several processes.
type Store struct {
	db      *sql.DB
	dialect dialect
	now     func() time.Time
	asIs    bool // WithoutMigration
}

// Option configures Open.
type Option func(*Store) error

// WithClock makes the store read the current time from now (tests, and
// anything that must agree with an injected clock).
func WithClock(now func() time.Time) Option {
	return func(s *Store) error {
		if now == nil {
			return errors.New("store: WithClock(nil)")
		}
		s.now = now
		return nil
	}
}

// WithoutMigration opens the store as it is, for inspection (serve --check
// --online): no migration is applied; SchemaVersion says where it stands.
func WithoutMigration() Option {
	return func(s *Store) error {
		s.asIs = true
		return nil
	}
}

// connectTimeout bounds the first connection so that a wrong store URL fails
// start-up quickly and clearly.
const connectTimeout = 10 * time.Second

// Open connects to the store named by rawURL, checks that it answers and
// applies missing migrations. rawURL is "sqlite:PATH" (the file is created,
// its directory must exist) or "postgres://…" / "postgresql://…" (any URL
// pgx accepts). Errors never contain the URL's password.
func Open(ctx context.Context, rawURL string, opts ...Option) (*Store, error) {
	s := &Store{now: time.Now}
	for _, opt := range opts {
		if err := opt(s); err != nil {
			return nil, err
		}
	}
	db, d, err := openDB(rawURL)
	if err != nil {
		return nil, err
	}
	s.db, s.dialect = db, d
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := ping(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: cannot connect to %s: %w", Redact(rawURL), err)
	}
	if s.asIs {
		return s, nil
	}
	if err := s.migrate(ctx, migrationFiles); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func openDB(rawURL string) (*sql.DB, dialect, error) {
	scheme, rest, ok := strings.Cut(rawURL, ":")
	if !ok {
		return nil, dialect{}, fmt.Errorf("store: %q is not a store URL (want sqlite:PATH or postgres://…)", Redact(rawURL))
	}
	switch scheme {
	case "sqlite":
		db, err := openSQLite(rest)
		return db, sqliteDialect, err
	case "postgres", "postgresql":
		cfg, err := pgx.ParseConfig(rawURL)
		if err != nil {
			// pgx's parse errors may quote the URL: report ours, redacted.
			return nil, dialect{}, fmt.Errorf("store: invalid PostgreSQL URL %s", Redact(rawURL))
		}
		if cfg.ConnectTimeout == 0 {
			cfg.ConnectTimeout = connectTimeout
		}
		return stdlib.OpenDB(*cfg), postgresDialect, nil
	default:
		return nil, dialect{}, fmt.Errorf("store: unsupported store scheme %q (want sqlite:PATH or postgres://…)", scheme)
	}
}

func openSQLite(path string) (*sql.DB, error) {
	path = strings.TrimPrefix(path, "//")
	switch {
	case path == "":
		return nil, errors.New("store: sqlite: URL has no file path (want sqlite:PATH)")
	case strings.ContainsAny(path, "?#"):
		return nil, fmt.Errorf("store: sqlite: file path %q may not contain ? or #", path)
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("store: sqlite: directory %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("store: sqlite: %s is not a directory", dir)
	}
	// The database holds sealed keys, trust maps and consents: create it
	// readable by its owner alone (SQLite gives its -wal and -shm files
	// the database's mode).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: open %s: %w", path, err)
	}
	f.Close()
	// busy_timeout makes concurrent writers wait rather than fail, and comes
	// first so that it covers the switch to WAL too; WAL lets readers run
	// beside the writer; _txlock=immediate takes the write lock at BEGIN so
	// that read-then-write transactions cannot deadlock.
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(8)
	return db, nil
}

// ping checks the first connection. A new SQLite file switching to WAL
// answers SQLITE_BUSY to a second process doing the same at that instant,
// without waiting on busy_timeout, so a busy answer is retried until ctx ends.
func ping(ctx context.Context, db *sql.DB) error {
	for {
		err := db.PingContext(ctx)
		var lite *sqlite.Error
		if err == nil || !errors.As(err, &lite) || lite.Code()&0xff != sqliteBusy {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// sqliteBusy is SQLITE_BUSY, the primary result code (extended codes keep it
// in their low byte).
const sqliteBusy = 5

// Redact returns the store URL with any password replaced, for messages.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		if strings.Contains(rawURL, "@") || strings.Contains(rawURL, "password") {
			return "<store URL>"
		}
		return rawURL
	}
	return u.Redacted()
}

// Ping reports whether the store answers; it backs /readyz.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Dialect names the SQL engine: "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.dialect.name }

// Close closes the store's connections.
func (s *Store) Close() error { return s.db.Close() }
