package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// backend makes fresh, empty databases of one engine for a test.
type backend struct {
	name string
	// newURL returns the URL of a new empty database, removed when t ends.
	newURL func(t *testing.T) string
}

// backends lists every engine the conformance suites run on. PostgreSQL runs
// when MCPSTS_TEST_POSTGRES holds a server URL; under CI it must.
func backends(t *testing.T) []backend {
	t.Helper()
	out := []backend{{name: "sqlite", newURL: func(t *testing.T) string {
		return "sqlite:" + filepath.Join(t.TempDir(), "mcpsts.db")
	}}}
	admin := os.Getenv("MCPSTS_TEST_POSTGRES")
	if admin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("MCPSTS_TEST_POSTGRES is not set under CI: the PostgreSQL conformance run may not be skipped")
		}
		t.Log("MCPSTS_TEST_POSTGRES not set: SKIPPING the PostgreSQL backend (set it to a server URL, e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
		return out
	}
	return append(out, backend{name: "postgres", newURL: func(t *testing.T) string {
		return newPostgresDatabase(t, admin)
	}})
}

// newPostgresDatabase creates a uniquely named database on the server of
// adminURL and drops it when the test ends.
func newPostgresDatabase(t *testing.T, adminURL string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		t.Fatalf("MCPSTS_TEST_POSTGRES: %v", err)
	}
	admin := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { admin.Close() })
	var b [6]byte
	rand.Read(b[:])
	name := "mcpsts_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatalf("MCPSTS_TEST_POSTGRES: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// openTest opens a store on url with clock, closed when the test ends.
func openTest(t *testing.T, rawURL string, now func() time.Time) *Store {
	t.Helper()
	s, err := Open(context.Background(), rawURL, WithClock(now))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
