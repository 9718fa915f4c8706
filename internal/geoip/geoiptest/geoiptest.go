// Package geoiptest writes small MaxMind-format databases for tests, with
// MaxMind's own writer, in the shape of a GeoIP2 City database merged with
// the ASN database.
package geoiptest

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Entry is what the database says of one network.
type Entry struct {
	Country, Continent string
	ASN                uint32
	Organization       string
}

// Write writes a database of entries by CIDR to a file in dir and returns
// its path.
func Write(t testing.TB, dir string, entries map[string]Entry) string {
	t.Helper()
	path := filepath.Join(dir, "geo.mmdb")
	WriteTo(t, path, entries)
	return path
}

// WriteTo writes the database to path, replacing the file as a whole (a
// rename, as an updater does).
func WriteTo(t testing.TB, path string, entries map[string]Entry) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType: "GeoIP2-City", RecordSize: 28,
		IncludeReservedNetworks: true, // tests live on loopback and private addresses
	})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, e := range entries {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		rec := mmdbtype.Map{}
		if e.Country != "" {
			rec["country"] = mmdbtype.Map{"iso_code": mmdbtype.String(e.Country), "names": mmdbtype.Map{"en": mmdbtype.String(e.Country)}}
		}
		if e.Continent != "" {
			rec["continent"] = mmdbtype.Map{"code": mmdbtype.String(e.Continent)}
		}
		if e.ASN != 0 {
			rec["autonomous_system_number"] = mmdbtype.Uint32(e.ASN)
			rec["autonomous_system_organization"] = mmdbtype.String(e.Organization)
		}
		if err := tree.Insert(n, rec); err != nil {
			t.Fatal(err)
		}
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
