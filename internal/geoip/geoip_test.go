package geoip_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/internal/geoip"
	"github.com/mcpsts/mcpsts/internal/geoip/geoiptest"
	"github.com/mcpsts/mcpsts/trustmaps"
)

func TestPlace(t *testing.T) {
	path := geoiptest.Write(t, t.TempDir(), map[string]geoiptest.Entry{
		"81.2.69.0/24":     {Country: "DE", Continent: "EU", ASN: 3320, Organization: "Deutsche Telekom AG"},
		"2a02:8100::/32":   {Country: "FR", Continent: "EU", ASN: 12322},
		"216.160.83.56/29": {Country: "US", Continent: "NA"},
		"100.64.0.0/10":    {ASN: 64512},
	})
	db, err := geoip.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr string
		want trustmaps.Place
	}{
		{"81.2.69.160", trustmaps.Place{Country: "DE", Continent: "EU", ASN: 3320}},
		{"2a02:8100::1", trustmaps.Place{Country: "FR", Continent: "EU", ASN: 12322}},
		{"216.160.83.57", trustmaps.Place{Country: "US", Continent: "NA"}},
		{"100.64.1.1", trustmaps.Place{ASN: 64512}},
		{"192.0.2.1", trustmaps.Place{}},   // not in the database
		{"2001:db8::1", trustmaps.Place{}}, // nor this
	} {
		if got := db.Place(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.addr, got, tc.want)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.mmdb")
	os.WriteFile(bad, []byte("not a database"), 0o600)
	for _, path := range []string{filepath.Join(dir, "missing.mmdb"), bad} {
		_, err := geoip.Open(path, nil)
		if err == nil || !strings.Contains(err.Error(), "geoip.database") || !strings.Contains(err.Error(), filepath.Base(path)) {
			t.Errorf("%s: %v, want an error naming the setting and the file", filepath.Base(path), err)
		}
	}
}

// TestReload: a new file goes into force, a broken one leaves the old.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	path := geoiptest.Write(t, dir, map[string]geoiptest.Entry{"81.2.69.0/24": {Country: "DE"}})
	db, err := geoip.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("81.2.69.1")
	if changed, err := db.Reload(); changed || err != nil {
		t.Fatalf("unchanged file: changed %v, %v", changed, err)
	}
	geoiptest.WriteTo(t, path, map[string]geoiptest.Entry{"81.2.69.0/24": {Country: "AT"}})
	os.Chtimes(path, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	if changed, err := db.Reload(); !changed || err != nil {
		t.Fatalf("new file: changed %v, %v", changed, err)
	}
	if got := db.Place(addr).Country; got != "AT" {
		t.Fatalf("after reload: %q, want AT", got)
	}
	os.WriteFile(path, []byte("truncated"), 0o600)
	if _, err := db.Reload(); err == nil {
		t.Fatal("broken file: no error")
	}
	if got := db.Place(addr).Country; got != "AT" {
		t.Fatalf("after a broken file: %q, want the version in force (AT)", got)
	}
}

func BenchmarkPlace(b *testing.B) {
	entries := map[string]geoiptest.Entry{}
	for i := range 200 {
		entries[netip.AddrFrom4([4]byte{byte(i + 1), 0, 0, 0}).String()+"/16"] = geoiptest.Entry{Country: "DE", Continent: "EU", ASN: uint32(i + 1), Organization: "Example"}
	}
	db, err := geoip.Open(geoiptest.Write(b, b.TempDir(), entries), nil)
	if err != nil {
		b.Fatal(err)
	}
	addr := netip.MustParseAddr("81.0.3.4")
	b.ReportAllocs()
	for b.Loop() {
		if db.Place(addr).ASN != 81 {
			b.Fatal("lookup")
		}
	}
}
