package trustmaps

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// CanonicalResource returns the canonical form of an MCP server's resource
// URI (RFC 8707), the form audiences are compared in: https only; scheme
// and host lower-cased; the default port (443) dropped; no user
// information, no fragment. An origin-only URI is written without a
// trailing slash, so that https://host and https://host/ name the same
// server; any other path is kept exactly, trailing slash included.
func CanonicalResource(s string) (string, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "", fmt.Errorf("%q is not a URI", s)
	case !strings.EqualFold(u.Scheme, "https") || u.Host == "" || u.Opaque != "":
		return "", fmt.Errorf("%q is not an absolute https URI", s)
	case u.User != nil:
		return "", fmt.Errorf("%q may not hold user information", s)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return "", fmt.Errorf("%q has a fragment", s)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return "", errors.New("no host")
	}
	host = strings.ToLower(host)
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" && port != "443" {
		host = net.JoinHostPort(strings.Trim(host, "[]"), port)
	}
	path := u.EscapedPath()
	if path == "/" {
		path = ""
	}
	out := "https://" + host + path
	if u.RawQuery != "" || u.ForceQuery {
		out += "?" + u.RawQuery
	}
	return out, nil
}

// ResourceMemo remembers canonical forms: a token endpoint sees the same
// few MCP servers named again and again. It keeps at most 4,096 names
// (then it computes without keeping) and is safe for concurrent use.
type ResourceMemo struct {
	m sync.Map // string → memoEntry
	n atomic.Int64
}

type memoEntry struct {
	canon string
	err   error
}

// Canonical is CanonicalResource, remembered.
func (r *ResourceMemo) Canonical(s string) (string, error) {
	if e, ok := r.m.Load(s); ok {
		return e.(memoEntry).canon, e.(memoEntry).err
	}
	canon, err := CanonicalResource(s)
	if r.n.Load() < 4096 && len(s) <= 512 {
		if _, loaded := r.m.LoadOrStore(s, memoEntry{canon, err}); !loaded {
			r.n.Add(1)
		}
	}
	return canon, err
}
