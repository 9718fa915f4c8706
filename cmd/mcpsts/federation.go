package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	spiffefed "github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/metric"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/attest/spiffe"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/internal/config"
)

// newOIDC builds the trusted providers of the configuration and the
// verifier of their tokens, which must name one of brokerAudiences unless a
// provider sets its own. It returns the verifier and the same wrapped so
// that single-use providers claim their tokens in replay. Remote key sets load when the providers Run.
func newOIDC(cfg *config.Config, brokerAudiences []string, replay attest.ReplayCache, now func() time.Time, log *slog.Logger, meter metric.Meter) (*oidc.Verifier, attest.Attestor, []*federation.Provider, error) {
	var providers []*federation.Provider
	var pcs []oidc.ProviderConfig
	for i, pc := range cfg.Providers {
		where := fmt.Sprintf("providers[%d] (%s)", i, pc.Name)
		fetcher, err := providerFetcher(pc)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", where, err)
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
				return nil, nil, nil, fmt.Errorf("%s: jwks_file: %w", where, err)
			}
		}
		p, err := federation.NewProvider(fc)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", where, err)
		}
		audiences := pc.Audiences
		if len(audiences) == 0 {
			audiences = brokerAudiences
		}
		providers = append(providers, p)
		pcs = append(pcs, oidc.ProviderConfig{
			Keys: p, Audiences: audiences, Leeway: pc.Leeway, MaxTokenAge: pc.MaxTokenAge,
			RequiredClaims: pc.RequiredClaims, Typ: pc.Typ, Preset: oidc.Preset(pc.Preset), SingleUse: pc.SingleUse,
			Users: pc.Kind == "user",
		})
	}
	// Workloads reuse their platform tokens (Kubernetes: up to an hour):
	// keep what was verified, re-checked for time and key on every use.
	v, err := oidc.NewVerifier(oidc.Options{Now: now, CacheEntries: 10_000}, pcs...)
	if err != nil {
		return nil, nil, nil, err
	}
	return v, attest.SingleUse(v, replay), providers, nil
}

// providerFetcher is the hardened fetcher of one provider, trusting only
// its ca_file when it has one.
func providerFetcher(pc config.Provider) (*federation.Fetcher, error) {
	if pc.CAFile == "" {
		return federation.NewFetcher(federation.FetcherOptions{}), nil
	}
	pem, err := os.ReadFile(pc.CAFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s: no PEM certificates", pc.CAFile)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return federation.NewFetcher(federation.FetcherOptions{Transport: t}), nil
}

// newSPIFFE builds the trusted SPIFFE trust domains and the verifier of
// their SVIDs (nil when none is configured). Bundle endpoints refresh in
// the returned runners; the Workload API connects in the background.
func newSPIFFE(ctx context.Context, cfg *config.Config, audiences []string, now func() time.Time, log *slog.Logger, meter metric.Meter) (*spiffe.Verifier, []func(context.Context), error) {
	if len(cfg.SPIFFE.TrustDomains) == 0 {
		return nil, nil, nil
	}
	bundles := federation.NewBundles()
	var runners []func(context.Context)
	var wl *federation.WorkloadAPISource
	for i, tdc := range cfg.SPIFFE.TrustDomains {
		where := fmt.Sprintf("spiffe.trust_domains[%d] (%s)", i, tdc.Name)
		td, err := spiffeid.TrustDomainFromString(tdc.Name)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", where, err)
		}
		var src federation.BundleGetter
		switch {
		case tdc.BundleFile != "":
			b, err := federation.LoadBundleFile(td, tdc.BundleFile)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", where, err)
			}
			src = b
		case tdc.WorkloadAPI:
			if wl == nil {
				wl = federation.NewWorkloadAPISource(ctx, cfg.SPIFFE.WorkloadAPISocket, log)
			}
			src = wl
		default:
			ep := tdc.BundleEndpoint
			var opts []spiffefed.FetchOption
			if ep.Profile == "https_spiffe" {
				initial, err := federation.LoadBundleFile(td, ep.InitialBundleFile)
				if err != nil {
					return nil, nil, fmt.Errorf("%s: %w", where, err)
				}
				opts = append(opts, spiffefed.WithSPIFFEAuth(initial, spiffeid.RequireFromString(ep.EndpointSPIFFEID)))
			} else if ep.CAFile != "" {
				pem, err := os.ReadFile(ep.CAFile)
				if err != nil {
					return nil, nil, fmt.Errorf("%s: ca_file: %w", where, err)
				}
				roots := x509.NewCertPool()
				roots.AppendCertsFromPEM(pem)
				opts = append(opts, spiffefed.WithWebPKIRoots(roots))
			}
			e, err := federation.NewBundleEndpoint(federation.BundleEndpointConfig{TrustDomain: td, URL: ep.URL, Options: opts, Clock: now, Log: log, Meter: meter})
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", where, err)
			}
			runners = append(runners, e.Run)
			src = e
		}
		if err := bundles.Add(td, src); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	return &spiffe.Verifier{Bundles: bundles, Audiences: audiences, Clock: now}, runners, nil
}
