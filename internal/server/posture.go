package server

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/mcpsts/mcpsts/attest/posture"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/internal/config"
)

// newPosture builds the posture sources of the configuration; nil when
// there are none. It returns the key sources of the assertion sources, to
// load and refresh like the providers'.
func newPosture(cfg *config.Config, now func() time.Time, log *slog.Logger, meter metric.Meter) (*posture.Set, []*federation.Provider, error) {
	if len(cfg.Posture) == 0 {
		return nil, nil, nil
	}
	var assertions []posture.AssertionConfig
	var pulls []*posture.Pull
	var keys []*federation.Provider
	for i, ps := range cfg.Posture {
		where := fmt.Sprintf("posture[%d] (%s)", i, ps.Name)
		switch ps.Kind {
		case "assertion":
			p, _, err := buildProvider(ps.AssertionKeys(), []string{"unused"}, now, log, meter)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", where, err)
			}
			keys = append(keys, p)
			assertions = append(assertions, posture.AssertionConfig{
				Name: ps.Name, Keys: p, Audience: ps.Audience, MaxAge: ps.MaxAge, Preset: ps.Preset,
				BindClaim: ps.Bind.Claim, BindIdentity: ps.Bind.Identity, OnError: posture.OnError(ps.OnError),
			})
		case "pull":
			t, err := providerTransport(config.Provider{CAFile: ps.CAFile})
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", where, err)
			}
			tr := t.(*http.Transport)
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			cert := &certFiles{cert: ps.CertFile, key: ps.KeyFile}
			if _, err := cert.get(nil); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", where, err)
			}
			tr.TLSClientConfig.GetClientCertificate = cert.get
			timeout, maxBytes := ps.Timeout, ps.MaxBytes
			if timeout == 0 {
				timeout = 2 * time.Second
			}
			if maxBytes == 0 {
				maxBytes = 64 << 10
			}
			p, err := posture.NewPull(posture.PullConfig{
				Name: ps.Name, URL: ps.URL, CacheTTL: ps.CacheTTL, CacheEntries: ps.CacheEntries, OnError: posture.OnError(ps.OnError),
				Fetcher: federation.NewFetcher(federation.FetcherOptions{Transport: tr, Timeout: timeout, MaxBytes: maxBytes, NoRedirects: true}),
			})
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", where, err)
			}
			pulls = append(pulls, p)
		}
	}
	set, err := posture.New(now, assertions, pulls)
	if err != nil {
		return nil, nil, err
	}
	return set, keys, nil
}

// certFiles is the broker's client certificate for pulled posture, read
// again when its files change (a workload certificate is short-lived, and
// whatever renews it rewrites the files).
type certFiles struct {
	cert, key string

	mu      sync.Mutex
	current *tls.Certificate
	mod     [2]time.Time
}

func (c *certFiles) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	var mod [2]time.Time
	for i, f := range []string{c.cert, c.key} {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		mod[i] = fi.ModTime()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current != nil && mod == c.mod {
		return c.current, nil
	}
	cert, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return nil, fmt.Errorf("client certificate (cert_file, key_file): %w", err)
	}
	c.current, c.mod = &cert, mod
	return c.current, nil
}

// forwardedFor takes the source address of requests that come through a
// trusted proxy from X-Forwarded-For: the right-most address that is not a
// trusted proxy's (each proxy appends the address it got the request
// from, so what is to the left of that may be the client's own invention).
// A request from any other peer keeps its own address, whatever it sends.
// Everything after it (rate limits, conditions, the audit log) sees the
// result as the request's RemoteAddr.
func forwardedFor(trusted []netip.Prefix, next http.Handler) http.Handler {
	if len(trusted) == 0 {
		return next
	}
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		peer, perr := netip.ParseAddr(host)
		values := r.Header.Values("X-Forwarded-For")
		if err != nil || perr != nil || len(values) == 0 || !isTrusted(peer.Unmap()) {
			next.ServeHTTP(w, r)
			return
		}
		var hops []string
		for _, v := range values {
			hops = append(hops, strings.Split(v, ",")...)
		}
		client := peer.Unmap()
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // a malformed hop: trust nothing to its left
			}
			client = a.Unmap()
			if !isTrusted(client) {
				break
			}
		}
		r2 := *r
		r2.RemoteAddr = netip.AddrPortFrom(client, 0).String()
		next.ServeHTTP(w, &r2)
	})
}
