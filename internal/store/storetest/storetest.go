// Package storetest gives tests fresh databases on every engine the store
// runs on: SQLite always, PostgreSQL when MCPSTS_TEST_POSTGRES names a
// server (and always under CI, where skipping it is a failure).
package storetest

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

// Backend makes fresh, empty databases of one engine.
type Backend struct {
	Name string
	// NewURL returns the store URL of a new empty database, removed when t
	// ends.
	NewURL func(t testing.TB) string
}

// Backends lists every engine to run store tests on.
func Backends(t testing.TB) []Backend {
	t.Helper()
	out := []Backend{{Name: "sqlite", NewURL: func(t testing.TB) string {
		return "sqlite:" + filepath.Join(t.TempDir(), "mcpsts.db")
	}}}
	admin := os.Getenv("MCPSTS_TEST_POSTGRES")
	if admin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("MCPSTS_TEST_POSTGRES is not set under CI: the PostgreSQL run may not be skipped")
		}
		t.Log("MCPSTS_TEST_POSTGRES not set: SKIPPING the PostgreSQL backend (set it to a server URL, e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
		return out
	}
	return append(out, Backend{Name: "postgres", NewURL: func(t testing.TB) string {
		return NewPostgresDatabase(t, admin)
	}})
}

// NewPostgresDatabase creates a uniquely named database on the server of
// adminURL, drops it when the test ends, and returns its URL.
func NewPostgresDatabase(t testing.TB, adminURL string) string {
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
