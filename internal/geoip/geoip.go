// Package geoip locates addresses with a MaxMind-format database (GeoIP2 or
// GeoLite2 Country, City or ASN, or a database of the same shape) that the
// operator provides, reloaded when the file changes.
package geoip

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/mcpsts/mcpsts/trustmaps"
)

// DB answers trustmaps.Places from a database file. It is safe for
// concurrent use.
type DB struct {
	path string
	log  *slog.Logger

	r  atomic.Pointer[maxminddb.Reader]
	mu sync.Mutex // one reload at a time; guards stat
	// stat is what the file in force looked like when it was read.
	stat struct {
		size    int64
		modTime time.Time
	}
}

// record is what we read of an entry: the fields of the Country and City
// databases (country, continent) and of the ASN database.
type record struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Continent struct {
		Code string `maxminddb:"code"`
	} `maxminddb:"continent"`
	ASN uint32 `maxminddb:"autonomous_system_number"`
}

// Open reads the database at path; a file that cannot be read or is not a
// MaxMind database is an error naming it.
func Open(path string, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db := &DB{path: path, log: log}
	if _, err := db.Reload(); err != nil {
		return nil, err
	}
	return db, nil
}

// Reload reads the file again when its size or modification time changed;
// changed reports whether a new version went into force. On error the
// version in force stays.
func (db *DB) Reload() (changed bool, err error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	fi, err := os.Stat(db.path)
	if err != nil {
		return false, fmt.Errorf("geoip.database: %w", err)
	}
	if db.r.Load() != nil && fi.Size() == db.stat.size && fi.ModTime().Equal(db.stat.modTime) {
		return false, nil
	}
	// Read into memory rather than mapped: a reader replaced while
	// lookups run on it must stay valid until they end, which the garbage
	// collector ensures for a byte slice and nothing ensures for a mapping.
	data, err := os.ReadFile(db.path)
	if err != nil {
		return false, fmt.Errorf("geoip.database: %w", err)
	}
	r, err := maxminddb.OpenBytes(data)
	if err != nil {
		return false, fmt.Errorf("geoip.database: %s: not a MaxMind database: %w", db.path, err)
	}
	db.r.Store(r)
	db.stat.size, db.stat.modTime = fi.Size(), fi.ModTime()
	db.log.Info("geolocation database in force", "path", db.path, "type", r.Metadata.DatabaseType,
		"built", r.Metadata.BuildTime().UTC().Format(time.RFC3339))
	return true, nil
}

// Place implements trustmaps.Places: the zero Place for an address the
// database does not know, or whose entry does not decode.
func (db *DB) Place(addr netip.Addr) trustmaps.Place {
	var rec record
	res := db.r.Load().Lookup(addr)
	if !res.Found() || res.Decode(&rec) != nil {
		return trustmaps.Place{}
	}
	return trustmaps.Place{Country: rec.Country.ISOCode, Continent: rec.Continent.Code, ASN: int64(rec.ASN)}
}

// Run reloads every interval until ctx is done; a file that cannot be read
// leaves the version in force and is logged.
func (db *DB) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := db.Reload(); err != nil {
				db.log.Warn("geolocation database not reloaded: the version in force stays", "error", err)
			}
		}
	}
}
