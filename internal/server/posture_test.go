package server

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestForwardedFor(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:1::/48")}
	var seen string
	h := forwardedFor(trusted, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.RemoteAddr }))
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"no header", "203.0.113.9:5555", nil, "203.0.113.9:5555"},
		{"spoofed by an untrusted peer", "203.0.113.9:5555", []string{"81.2.69.160"}, "203.0.113.9:5555"},
		{"trusted proxy", "10.1.2.3:443", []string{"81.2.69.160"}, "81.2.69.160:0"},
		{"client-invented hops to the left are not believed", "10.1.2.3:443", []string{"1.1.1.1, 81.2.69.160"}, "81.2.69.160:0"},
		{"chain of trusted proxies", "10.1.2.3:443", []string{"81.2.69.160, 10.9.9.9", "10.5.5.5"}, "81.2.69.160:0"},
		// The client's address only in the first of several header lines,
		// the trusted hops after it each on a line of their own: every
		// line is read, in order (reading only the first or only the last
		// line gives another answer).
		{"chain split over several header lines", "10.1.2.3:443", []string{"1.1.1.1", "81.2.69.160", "10.9.9.9", "10.5.5.5"}, "81.2.69.160:0"},
		{"IPv6 proxy and client", "[2001:db8:1::7]:443", []string{"2a02:8100::1"}, "[2a02:8100::1]:0"},
		{"mapped IPv4 is unmapped", "10.1.2.3:443", []string{"::ffff:81.2.69.160"}, "81.2.69.160:0"},
		{"malformed hop stops the walk", "10.1.2.3:443", []string{"81.2.69.160, garbage, 10.9.9.9"}, "10.9.9.9:0"},
		{"only trusted hops", "10.1.2.3:443", []string{"10.7.7.7"}, "10.7.7.7:0"},
		{"peer just outside the trusted network", "11.0.0.1:443", []string{"81.2.69.160"}, "11.0.0.1:443"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/token", nil)
		r.RemoteAddr = tc.peer
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if seen != tc.want {
			t.Errorf("%s: source %s, want %s", tc.name, seen, tc.want)
		}
	}
	// No trusted proxy: X-Forwarded-For is never read, whoever sends it.
	plain := forwardedFor(nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.RemoteAddr }))
	for _, peer := range []string{"10.1.2.3:443", "203.0.113.9:5555"} {
		r := httptest.NewRequest(http.MethodPost, "/token", nil)
		r.RemoteAddr = peer
		r.Header.Set("X-Forwarded-For", "81.2.69.160")
		plain.ServeHTTP(httptest.NewRecorder(), r)
		if seen != peer {
			t.Errorf("no trusted proxies, peer %s: source %s", peer, seen)
		}
	}
}

// FuzzForwardedFor: whatever X-Forwarded-For holds, the source address is
// the peer's or an address parsed from the header, and only a trusted
// peer's header is read.
func FuzzForwardedFor(f *testing.F) {
	f.Add("10.1.2.3", "81.2.69.160, 10.9.9.9")
	f.Add("203.0.113.9", "81.2.69.160")
	f.Add("10.0.0.1", "::ffff:1.2.3.4,,garbage,[::1]")
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	var seen string
	h := forwardedFor(trusted, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.RemoteAddr }))
	f.Fuzz(func(t *testing.T, peer, xff string) {
		ip, err := netip.ParseAddr(peer)
		if err != nil {
			return
		}
		r := httptest.NewRequest(http.MethodPost, "/token", nil)
		r.RemoteAddr = netip.AddrPortFrom(ip, 443).String()
		r.Header["X-Forwarded-For"] = []string{xff}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if !trusted[0].Contains(ip.Unmap()) {
			if seen != r.RemoteAddr {
				t.Fatalf("an untrusted peer's header was read: %s -> %s", r.RemoteAddr, seen)
			}
			return
		}
		got, err := netip.ParseAddrPort(seen)
		if err != nil {
			t.Fatalf("source %q is not an address", seen)
		}
		if got.Addr() == ip.Unmap() {
			return
		}
		// Otherwise one of the header's entries, however it was written
		// ("::001" is ::1, "::ffff:1.2.3.4" is 1.2.3.4).
		for entry := range strings.SplitSeq(xff, ",") {
			if a, err := netip.ParseAddr(strings.Trim(strings.TrimSpace(entry), "[]")); err == nil && a.Unmap() == got.Addr() {
				return
			}
		}
		t.Fatalf("source %s is neither the peer nor in the header %q", got, xff)
	})
}
