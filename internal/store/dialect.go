package store

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
)

// dialect holds what differs between the SQL engines we run on. Queries are
// written once, with ? placeholders, in the subset both engines accept.
type dialect struct {
	name string
	// txLock, run first in a transaction with a lock key as its argument,
	// excludes every other transaction that takes the same key until
	// commit, across processes. SQLite needs none: its transactions begin
	// IMMEDIATE, which takes the database's write lock.
	txLock string
	// numbered placeholders ($1, $2…) instead of ?.
	numbered bool
}

var (
	sqliteDialect   = dialect{name: "sqlite"}
	postgresDialect = dialect{
		name:     "postgres",
		txLock:   "SELECT pg_advisory_xact_lock($1)",
		numbered: true,
	}
)

// Lock keys of the transactions that must run one at a time (arbitrary,
// distinct constants).
const (
	lockMigrations int64 = 7262018840353211913
	lockKeys       int64 = 7262018840353211914
)

// lock takes the dialect's transaction lock for key, if it has one.
func (d dialect) lock(ctx context.Context, tx *sql.Tx, key int64) error {
	if d.txLock == "" {
		return nil
	}
	_, err := tx.ExecContext(ctx, d.txLock, key)
	return err
}

// rebind rewrites ? placeholders for the dialect. Our queries hold no ? in
// string literals, so a plain scan is enough.
func (d dialect) rebind(query string) string {
	if !d.numbered {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
