package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	spiffefed "github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/metric"

	"github.com/mcpsts/mcpsts/attest"
	awsattest "github.com/mcpsts/mcpsts/attest/aws"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/attest/spiffe"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// newOIDC builds the trusted providers of the configuration file and the
// verifier of their tokens and of those of the providers in the store
// (reloaded by its Run), which must name one of brokerAudiences unless a
// provider sets its own. It returns the verifier and the same wrapped so
// that single-use providers claim their tokens in replay. Remote key sets
// load when the providers Run.
func newOIDC(cfg *config.Config, brokerAudiences []string, replay attest.ReplayCache, repo trustmaps.Repository, now func() time.Time, log *slog.Logger, meter metric.Meter) (*dynamicOIDC, attest.Attestor, []*federation.Provider, error) {
	d := &dynamicOIDC{audiences: brokerAudiences, now: now, log: log, meter: meter}
	d.storeSet = storeSet[*storeProvider]{
		repo: repo, what: "federation provider", log: log,
		version: func(p *storeProvider) int64 { return p.version },
		start:   d.start,
		put: func(p *storeProvider) {
			if p.kind == "spiffe" {
				d.spiffe.bundles.Add(p.td, p.src)
			}
		},
		stop: d.stopProvider,
		swap: d.swap,
	}
	var fixed []oidc.ProviderConfig
	for i, pc := range cfg.Providers {
		p, opc, err := buildProvider(pc, brokerAudiences, now, log, meter)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("providers[%d] (%s): %w", i, pc.Name, err)
		}
		d.fixed = append(d.fixed, p)
		fixed = append(fixed, opc)
	}
	// Workloads reuse their platform tokens (Kubernetes: up to an hour):
	// keep what was verified, re-checked for time and key on every use.
	set, err := oidc.NewSet(oidc.Options{Now: now, CacheEntries: 10_000}, fixed...)
	if err != nil {
		return nil, nil, nil, err
	}
	d.set = set
	return d, attest.SingleUse(d, replay), d.fixed, nil
}

// buildProvider makes the key source and the verifier settings of one
// trusted provider.
func buildProvider(pc config.Provider, brokerAudiences []string, now func() time.Time, log *slog.Logger, meter metric.Meter) (*federation.Provider, oidc.ProviderConfig, error) {
	fetcher, err := providerFetcher(pc)
	if err != nil {
		return nil, oidc.ProviderConfig{}, err
	}
	fc := federation.ProviderConfig{
		Name: pc.Name, Issuer: pc.Issuer, Discovery: pc.Discovery, JWKSURI: pc.JWKSURI,
		Algorithms: pc.Algorithms, MinRefresh: pc.Refresh.Min, MaxRefresh: pc.Refresh.Max,
		UnknownKidInterval: pc.Refresh.UnknownKidInterval, StaleBound: pc.Refresh.StaleBound,
		Fetcher: fetcher, Clock: now, Log: log, Meter: meter,
	}
	switch {
	case pc.JWKS != "":
		fc.JWKS = []byte(pc.JWKS)
	case pc.JWKSFile != "":
		if fc.JWKS, err = os.ReadFile(pc.JWKSFile); err != nil {
			return nil, oidc.ProviderConfig{}, fmt.Errorf("jwks_file: %w", err)
		}
	}
	p, err := federation.NewProvider(fc)
	if err != nil {
		return nil, oidc.ProviderConfig{}, err
	}
	audiences := pc.Audiences
	if len(audiences) == 0 {
		audiences = brokerAudiences
	}
	return p, oidc.ProviderConfig{
		Keys: p, Audiences: audiences, Leeway: pc.Leeway, MaxTokenAge: pc.MaxTokenAge,
		RequiredClaims: pc.RequiredClaims, Typ: pc.Typ, Preset: oidc.Preset(pc.Preset), SingleUse: pc.SingleUse,
		Users: pc.Kind == "user", IDJAG: pc.IDJAG, IDJAGMaxLifetime: pc.IDJAGMaxLifetime,
	}, nil
}

// dynamicOIDC verifies the tokens of the providers of the configuration
// file and of those managed through the admin API, which it reloads from
// the store: a provider added there is trusted from the next reload, one
// removed no longer. It is safe for concurrent use.
type dynamicOIDC struct {
	storeSet[*storeProvider] // Reload, Run

	audiences []string
	now       func() time.Time
	log       *slog.Logger
	meter     metric.Meter

	fixed []*federation.Provider
	set   *oidc.Set // the file's providers, and the store's put in force by swap

	// The store's SPIFFE trust domains and AWS settings go here.
	spiffe *spiffeSet
	aws    *dynamicAWS
}

type storeProvider struct {
	version int64
	kind    string // oidc, spiffe, aws
	cfg     oidc.ProviderConfig
	td      spiffeid.TrustDomain
	src     federation.BundleGetter // spiffe
	stop    context.CancelFunc
}

// Attest implements attest.Attestor with the providers in force.
func (d *dynamicOIDC) Attest(ctx context.Context, ev attest.Evidence) (attest.Identity, error) {
	return d.set.Attest(ctx, ev)
}

// Trusts reports whether iss is a trusted provider's issuer now.
func (d *dynamicOIDC) Trusts(iss string) bool { return d.set.Trusts(iss) }

// start builds a store provider and starts its refresher.
func (d *dynamicOIDC) start(run context.Context, rec trustmaps.Record) (*storeProvider, error) {
	doc, err := config.ParseFederationDocument("store:"+rec.ID, rec.Document)
	if err != nil {
		return nil, err
	}
	version := rec.Version
	runCtx, stop := context.WithCancel(run)
	sp := &storeProvider{version: version, kind: doc.Type, stop: stop}
	switch doc.Type {
	case "oidc":
		p, opc, err := buildProvider(*doc.OIDC, d.audiences, d.now, d.log, d.meter)
		if err != nil {
			stop()
			return nil, err
		}
		go p.Run(runCtx)
		sp.cfg = opc
	case "spiffe":
		td, src, run, err := d.spiffe.source(runCtx, *doc.SPIFFE)
		if err != nil {
			stop()
			return nil, err
		}
		if run != nil {
			go run(runCtx)
		}
		sp.td, sp.src = td, src
	case "aws":
		if err := d.aws.set(doc.AWS); err != nil {
			stop()
			return nil, err
		}
	}
	return sp, nil
}

// stopProvider takes a store provider out of force.
func (d *dynamicOIDC) stopProvider(p *storeProvider) {
	p.stop()
	switch p.kind {
	case "spiffe":
		d.spiffe.bundles.Remove(p.td)
	case "aws":
		d.aws.set(nil)
	}
}

// swap puts the running store providers in force beside the fixed ones.
func (d *dynamicOIDC) swap(running map[string]*storeProvider) error {
	var pcs []oidc.ProviderConfig
	for _, id := range slices.Sorted(maps.Keys(running)) {
		if running[id].kind == "oidc" {
			pcs = append(pcs, running[id].cfg)
		}
	}
	return d.set.Swap(pcs)
}

// providerFetcher is the hardened fetcher of one provider, trusting only
// its ca_file when it has one.
func providerFetcher(pc config.Provider) (*federation.Fetcher, error) {
	if pc.CAFile == "" {
		return federation.NewFetcher(federation.FetcherOptions{}), nil
	}
	t, err := providerTransport(pc)
	if err != nil {
		return nil, err
	}
	return federation.NewFetcher(federation.FetcherOptions{Transport: t}), nil
}

// providerTransport trusts the provider's CA file when it has one, the
// system roots otherwise.
func providerTransport(pc config.Provider) (http.RoundTripper, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if pc.CAFile == "" {
		return t, nil
	}
	pem, err := os.ReadFile(pc.CAFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s: no PEM certificates", pc.CAFile)
	}
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return t, nil
}

// newSPIFFE builds the SPIFFE trust domains of the configuration file and
// the verifier of their SVIDs, to which the store's trust domains are added
// by the returned set. Bundle endpoints refresh in the returned runners;
// the Workload API connects in the background, on first use.
func newSPIFFE(ctx context.Context, cfg *config.Config, audiences []string, now func() time.Time, log *slog.Logger, meter metric.Meter) (*spiffe.Verifier, *spiffeSet, []func(context.Context), error) {
	set := &spiffeSet{bundles: federation.NewBundles(), socket: cfg.SPIFFE.WorkloadAPISocket, now: now, log: log, meter: meter}
	var runners []func(context.Context)
	for i, tdc := range cfg.SPIFFE.TrustDomains {
		where := fmt.Sprintf("spiffe.trust_domains[%d] (%s)", i, tdc.Name)
		td, src, run, err := set.source(ctx, tdc)
		if err == nil {
			err = set.bundles.Add(td, src)
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", where, err)
		}
		if run != nil {
			runners = append(runners, run)
		}
	}
	return &spiffe.Verifier{Bundles: set.bundles, Audiences: audiences, Clock: now}, set, runners, nil
}

// spiffeSet builds the bundle sources of trust domains.
type spiffeSet struct {
	bundles *federation.Bundles
	socket  string
	now     func() time.Time
	log     *slog.Logger
	meter   metric.Meter

	wlOnce sync.Once
	wl     *federation.WorkloadAPISource
}

// source makes the bundle source of one trust domain, and its refresher
// when it has one.
func (s *spiffeSet) source(ctx context.Context, tdc config.TrustDomain) (spiffeid.TrustDomain, federation.BundleGetter, func(context.Context), error) {
	td, err := spiffeid.TrustDomainFromString(tdc.Name)
	if err != nil {
		return td, nil, nil, err
	}
	switch {
	case tdc.BundleFile != "":
		b, err := federation.LoadBundleFile(td, tdc.BundleFile)
		return td, b, nil, err
	case tdc.WorkloadAPI:
		s.wlOnce.Do(func() { s.wl = federation.NewWorkloadAPISource(ctx, s.socket, s.log) })
		return td, s.wl, nil, nil
	}
	ep := tdc.BundleEndpoint
	var opts []spiffefed.FetchOption
	if ep.Profile == "https_spiffe" {
		initial, err := federation.LoadBundleFile(td, ep.InitialBundleFile)
		if err != nil {
			return td, nil, nil, err
		}
		opts = append(opts, spiffefed.WithSPIFFEAuth(initial, spiffeid.RequireFromString(ep.EndpointSPIFFEID)))
	} else if ep.CAFile != "" {
		pem, err := os.ReadFile(ep.CAFile)
		if err != nil {
			return td, nil, nil, fmt.Errorf("ca_file: %w", err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		opts = append(opts, spiffefed.WithWebPKIRoots(roots))
	}
	e, err := federation.NewBundleEndpoint(federation.BundleEndpointConfig{TrustDomain: td, URL: ep.URL, Options: opts, Clock: s.now, Log: s.log, Meter: s.meter})
	if err != nil {
		return td, nil, nil, err
	}
	return td, e, e.Run, nil
}

// dynamicAWS builds the AWS attestor from the AWS settings in force, the
// configuration file's or a store provider's, and switches to it.
type dynamicAWS struct {
	awsattest.Switch
	audiences []string
	replay    attest.ReplayCache
	now       func() time.Time
}

// set puts cfg in force; nil takes AWS out.
func (d *dynamicAWS) set(cfg *config.AWS) error {
	if cfg == nil {
		d.Set(nil)
		return nil
	}
	stsClient, err := pinnedClient(cfg.STSCAFile)
	if err != nil {
		return err
	}
	var a attest.Attestor = &awsattest.Verifier{Provider: cfg.Provider, Audiences: d.audiences, Hosts: cfg.STSHosts, HTTP: stsClient, Clock: d.now}
	if cfg.SingleUse == nil || *cfg.SingleUse {
		a = attest.SingleUse(a, d.replay) // a signed request is good for 15 minutes: use it once
	}
	d.Set(a)
	return nil
}

// pinnedClient is an HTTP client that trusts only the CA in caFile, or the
// system roots when caFile is empty.
func pinnedClient(caFile string) (*http.Client, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	if caFile == "" {
		return c, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates", caFile)
	}
	c.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	return c, nil
}

// singleUseTruster is the single-use-wrapped OIDC attestor with its
// verifier's issuer list, for attest.JWTRouter.
type singleUseTruster struct {
	attest.Attestor
	v interface{ Trusts(iss string) bool }
}

func (s singleUseTruster) Trusts(iss string) bool { return s.v.Trusts(iss) }

// providerAlgorithms lists the algorithms the trusted providers sign with,
// in a fixed order: those accepted for client assertions.
func providerAlgorithms(providers []*federation.Provider) []string {
	seen := map[string]bool{}
	for _, p := range providers {
		for _, a := range p.Algorithms() {
			seen[a] = true
		}
	}
	var out []string
	for _, a := range federation.SupportedAlgorithms() {
		if seen[a] {
			out = append(out, a)
		}
	}
	return out
}
