package exchange

import (
	"net/http/httptest"
	"testing"
)

// TestSourcePrefixes (issue 32): per-source limits key IPv6 sources on
// their /64 by default (a host picks any address of it), IPv4 on the
// address, each configurable.
func TestSourcePrefixes(t *testing.T) {
	for _, tc := range []struct {
		p          SourcePrefixes
		addr, want string
	}{
		{SourcePrefixes{}, "192.0.2.7:1234", "192.0.2.7/32"},
		{SourcePrefixes{}, "[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::/64"},
		{SourcePrefixes{}, "[2001:db8:1:2:bbbb::9]:443", "2001:db8:1:2::/64"},
		{SourcePrefixes{}, "[::ffff:192.0.2.7]:1", "192.0.2.7/32"},
		{SourcePrefixes{}, "[fe80::1%eth0]:1", "fe80::/64"},
		{SourcePrefixes{IPv4: 24, IPv6: 56}, "192.0.2.7:1", "192.0.2.0/24"},
		{SourcePrefixes{IPv4: 24, IPv6: 56}, "[2001:db8:1:2ff::1]:1", "2001:db8:1:200::/56"},
		{SourcePrefixes{}, "not-an-address", "not-an-address"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.addr
		if got := tc.p.key(r); got != tc.want {
			t.Errorf("%+v key(%s) = %s, want %s", tc.p, tc.addr, got, tc.want)
		}
	}
}
