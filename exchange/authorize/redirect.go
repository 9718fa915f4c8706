// Package authorize holds the rules of the browser flows (OAuth 2.1
// authorization code with PKCE): exact redirect-URI matching, PKCE S256,
// and the random values that bind a flow (state, nonce, codes). The
// authorization endpoint, the upstream login and the consent screen are
// built on them.
package authorize

import (
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
)

// RedirectMatches reports whether requested is one of the client's
// registered redirect URIs. The comparison is of strings, exactly (RFC 9700
// §4.1.3, OAuth 2.1 §2.3.1): no prefix, no added query or path, no other
// case, scheme, subdomain or trailing slash. The one exception is RFC 8252
// §7.3: for a loopback redirect URI over http (127.0.0.1, [::1] or
// localhost), the port may differ from the registered one, since native
// clients listen on any free port; everything else must still be equal.
func RedirectMatches(registered []string, requested string) bool {
	for _, r := range registered {
		if r == requested {
			return true
		}
	}
	req, ok := loopback(requested)
	if !ok {
		return false
	}
	for _, r := range registered {
		if reg, ok := loopback(r); ok && reg == req {
			return true
		}
	}
	return false
}

// loopback returns a loopback http redirect URI without its port, and
// whether it is one. A URI that does not round-trip through url.Parse
// exactly (escapes, userinfo, a fragment, an odd form) is not one.
func loopback(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Fragment != "" || u.Opaque != "" || u.String() != s {
		return "", false
	}
	host := u.Hostname()
	if host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() || host != ip.String() || strings.Contains(host, ":") && host != "::1" {
			return "", false
		}
	}
	if p := u.Port(); p != "" && strings.TrimLeft(p, "0123456789") != "" {
		return "", false
	}
	u.Host = u.Hostname()
	if strings.Contains(u.Host, ":") {
		u.Host = "[" + u.Host + "]"
	}
	return u.String(), true
}

// dnsName is a host name of DNS labels: letters, digits and inner hyphens.
var dnsName = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$`)

// RedirectHost reports whether host (a URL's Hostname) may be a redirect
// URI's: a DNS name, or an IP literal without a zone. Anything else (an
// IPv6 zone holding "; frame-ancestors …", spaces, quotes) could change
// what a page that names the redirect's origin says, in its CSP.
func RedirectHost(host string) bool {
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Zone() == ""
	}
	return len(host) <= 253 && dnsName.MatchString(host)
}

// Origin is scheme://host[:port] of a redirect URI, built from its
// checked parts (a CSP source), or "" when it has none that are safe.
func Origin(u string) string {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "https" && p.Scheme != "http") || !RedirectHost(p.Hostname()) ||
		strings.TrimLeft(p.Port(), "0123456789") != "" {
		return ""
	}
	host := p.Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port := p.Port(); port != "" {
		host += ":" + port
	}
	return p.Scheme + "://" + host
}
