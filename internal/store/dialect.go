package store

import (
	"strconv"
	"strings"
)

// dialect holds what differs between the SQL engines we run on. Queries are
// written once, with ? placeholders, in the subset both engines accept.
type dialect struct {
	name string
	// migrationLock is run first in the migration transaction so that two
	// processes starting at once apply migrations one after the other.
	// SQLite needs none: the transaction begins IMMEDIATE, which takes the
	// database's write lock.
	migrationLock string
	// numbered placeholders ($1, $2…) instead of ?.
	numbered bool
}

var (
	sqliteDialect   = dialect{name: "sqlite"}
	postgresDialect = dialect{
		name: "postgres",
		// An arbitrary constant key for the advisory lock, released at commit.
		migrationLock: "SELECT pg_advisory_xact_lock(7262018840353211913)",
		numbered:      true,
	}
)

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
