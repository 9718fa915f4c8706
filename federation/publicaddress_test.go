package federation

import (
	"net/netip"
	"testing"
)

func TestPublicAddress(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8": true, "2001:4860:4860::8888": true, "93.184.216.34": true,
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.169.254": false, "fe80::1": false, "fc00::1": false, "100.64.0.1": false,
		"0.0.0.0": false, "::": false, "224.0.0.1": false, "ff02::1": false,
		// Issue 32: prefixes that reach another address than they seem to.
		"64:ff9b::a00:1": false, "64:ff9b:1::a00:1": false, "2002:a00:1::1": false, "fec0::1": false,
	} {
		if got := publicAddress(netip.MustParseAddr(addr).Unmap()); got != want {
			t.Errorf("publicAddress(%s) = %v, want %v", addr, got, want)
		}
	}
}
