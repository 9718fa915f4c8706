package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/internal/tlsserver"
	"github.com/mcpsts/mcpsts/issuer"
)

// CheckResult is one thing a first start needs, tried by CheckOnline.
type CheckResult struct {
	Name   string // store, signing keys, tls, providers[i] (name), spiffe.trust_domains[i] (name), admin.client_ca_file
	Detail string // what was found, for a line of output
	Err    error  // nil: it would work
}

// CertExpiryWarning is how close to its expiry a server certificate fails
// the online check: a deploy should not start one that lapses this soon.
const CertExpiryWarning = 14 * 24 * time.Hour

// checkTimeout bounds each remote check.
const checkTimeout = 15 * time.Second

// CheckOnline tries what a first start of cfg would need, changing
// nothing: the store answers at a schema this build can use (a missing
// SQLite file or an empty database is fine: a start creates it); the
// signing keys open with the KEK; the server certificate is valid for the
// issuer's host, and not within CertExpiryWarning of expiry; every
// provider's discovery and key set can be fetched; every SPIFFE bundle
// source answers; the administrators' CA can be read. It reports every
// check, in that order.
func CheckOnline(ctx context.Context, cfg *config.Config, opts Options) []CheckResult {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var out []CheckResult
	out = append(out, checkStoreAndKeys(ctx, cfg, opts)...)
	out = append(out, checkCertificate(cfg, opts.Now()))
	for i, pc := range cfg.Providers {
		out = append(out, checkProvider(ctx, fmt.Sprintf("providers[%d] (%s)", i, pc.Name), pc, opts))
	}
	for i, tdc := range cfg.SPIFFE.TrustDomains {
		out = append(out, checkTrustDomain(ctx, fmt.Sprintf("spiffe.trust_domains[%d] (%s)", i, tdc.Name), cfg, tdc, opts))
	}
	if cfg.Admin.ClientCAFile != "" {
		r := CheckResult{Name: "admin.client_ca_file", Detail: cfg.Admin.ClientCAFile}
		if _, err := adminAuthorizer(cfg, cfg.Issuer, nil); err != nil {
			r.Err = err
		}
		out = append(out, r)
	}
	return out
}

func checkStoreAndKeys(ctx context.Context, cfg *config.Config, opts Options) []CheckResult {
	st := CheckResult{Name: "store"}
	keys := CheckResult{Name: "signing keys"}
	storeURL := cfg.StoreURL()
	if path, ok := strings.CutPrefix(storeURL, "sqlite:"); ok {
		if _, err := os.Stat(strings.TrimPrefix(path, "//")); errors.Is(err, fs.ErrNotExist) {
			st.Detail = "SQLite file " + path + " does not exist yet: a start creates it"
			keys.Detail = "none yet: a start makes the first"
			return []CheckResult{st, keys}
		}
	}
	s, err := store.Open(ctx, storeURL, store.WithoutMigration(), store.WithClock(opts.Now))
	if err != nil {
		st.Err = err
		keys.Err = errors.New("not checked: the store is not reachable")
		return []CheckResult{st, keys}
	}
	defer s.Close()
	latest, err := s.LatestSchema()
	if err != nil {
		st.Err = err
		return []CheckResult{st}
	}
	v, err := s.SchemaVersion(ctx)
	switch {
	case err != nil:
		st.Detail = fmt.Sprintf("%s, reachable; no schema yet: a start creates it (version %d)", s.Dialect(), latest)
		keys.Detail = "none yet: a start makes the first"
		return []CheckResult{st, keys}
	case v > latest:
		st.Err = fmt.Errorf("%s at schema version %d, newer than this build's %d: run the newer mcpsts", s.Dialect(), v, latest)
	case v < latest:
		st.Detail = fmt.Sprintf("%s at schema version %d: a start migrates it to %d", s.Dialect(), v, latest)
	default:
		st.Detail = fmt.Sprintf("%s at schema version %d", s.Dialect(), v)
	}
	if cfg.Keys.AWSKMS.KeyID != "" {
		keys.Detail = "signed by AWS KMS key " + cfg.Keys.AWSKMS.KeyID + ": not checked here (a start enrolls it)"
		return []CheckResult{st, keys}
	}
	kek, err := loadKEK(cfg, opts.Dev, opts.Getenv)
	if err != nil {
		keys.Err = err
		return []CheckResult{st, keys}
	}
	alg, _ := issuer.ParseAlgorithm(cfg.Keys.Algorithm) // validated
	iss, err := issuer.New(issuer.Config{Issuer: cfg.Issuer, Store: s, Local: &issuer.LocalKeys{KEK: kek, Algorithm: alg, RSABits: cfg.Keys.RSABits},
		RotationPeriod: cfg.Keys.RotationPeriod, DefaultTTL: cfg.Tokens.DefaultTTL, MaxTTL: cfg.Tokens.MaxTTL, Clock: opts.Now})
	if err == nil {
		err = iss.Refresh(ctx) // opens every key that can sign: the KEK must fit
	}
	if err != nil {
		keys.Err = err
		return []CheckResult{st, keys}
	}
	statuses, err := iss.Keys(ctx)
	if err != nil {
		keys.Err = err
		return []CheckResult{st, keys}
	}
	open := 0
	for _, k := range statuses {
		if k.State == issuer.StatePending || k.State == issuer.StateActive {
			open++
		}
	}
	keys.Detail = fmt.Sprintf("%d stored, %d that sign or will open with the KEK", len(statuses), open)
	if open == 0 {
		keys.Detail = "none that can sign: a start makes one"
	}
	return []CheckResult{st, keys}
}

func checkCertificate(cfg *config.Config, now time.Time) CheckResult {
	r := CheckResult{Name: "tls"}
	cert, _, err := tlsserver.LoadCertificate(cfg.TLS.CertFile, cfg.TLS.KeyFile, now, cfg.TLS.AllowSelfSigned)
	if err != nil {
		r.Err = err
		return r
	}
	leaf := cert.Leaf
	u, err := url.Parse(cfg.Issuer)
	if err != nil {
		r.Err = err
		return r
	}
	if err := leaf.VerifyHostname(u.Hostname()); err != nil {
		r.Err = fmt.Errorf("%s is not valid for the issuer's host %s: %v", cfg.TLS.CertFile, u.Hostname(), err)
		return r
	}
	left := leaf.NotAfter.Sub(now)
	days := int(math.Round(left.Hours() / 24))
	r.Detail = fmt.Sprintf("%s valid for %s, expires %s (in %d days)", cfg.TLS.CertFile, u.Hostname(), leaf.NotAfter.UTC().Format("2006-01-02"), days)
	if left < CertExpiryWarning {
		r.Err = fmt.Errorf("%s expires %s, in %d days: renew it before deploying", cfg.TLS.CertFile, leaf.NotAfter.UTC().Format("2006-01-02"), days)
	}
	return r
}

func checkProvider(ctx context.Context, name string, pc config.Provider, opts Options) CheckResult {
	r := CheckResult{Name: name}
	p, _, err := buildProvider(pc, []string{"check"}, opts.Now, opts.logger(), nil)
	if err != nil {
		r.Err = err
		return r
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	if err := p.Refresh(ctx); err != nil {
		r.Err = err
		return r
	}
	src := "discovery"
	switch {
	case pc.JWKSURI != "":
		src = "jwks_uri"
	case pc.JWKS != "" || pc.JWKSFile != "":
		src = "pinned key set"
	}
	n, algs := p.KeySummary()
	r.Detail = fmt.Sprintf("%s: %s, %d keys (%s)", pc.Issuer, src, n, strings.Join(algs, ", "))
	return r
}

func checkTrustDomain(ctx context.Context, name string, cfg *config.Config, tdc config.TrustDomain, opts Options) CheckResult {
	r := CheckResult{Name: name}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	set := &spiffeSet{bundles: federation.NewBundles(), socket: cfg.SPIFFE.WorkloadAPISocket, now: opts.Now, log: opts.logger()}
	td, src, _, err := set.source(ctx, tdc)
	if err != nil {
		r.Err = err
		return r
	}
	if e, ok := src.(*federation.BundleEndpoint); ok {
		if err := e.Refresh(ctx); err != nil {
			r.Err = err
			return r
		}
	}
	b, err := waitBundle(ctx, src, td)
	if err != nil {
		r.Err = err
		return r
	}
	r.Detail = fmt.Sprintf("bundle with %d X.509 authorities and %d JWT authorities", len(b.X509Authorities()), len(b.JWTAuthorities()))
	return r
}

// waitBundle waits for src (a Workload API connecting in the background)
// to hold td's bundle, until ctx ends.
func waitBundle(ctx context.Context, src federation.BundleGetter, td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	for {
		b, err := src.GetBundleForTrustDomain(td)
		if err == nil {
			return b, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// logger is the Log of o, or one that discards.
func (o Options) logger() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Log
}
