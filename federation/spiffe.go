package federation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	spiffefed "github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// BundleGetter gives the bundle of one trust domain (a static bundle, a
// bundle endpoint, the Workload API's source).
type BundleGetter interface {
	GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error)
}

// Bundles holds the trust bundles of the configured SPIFFE trust domains,
// each from exactly one source. It implements x509bundle.Source and
// jwtbundle.Source, so an SVID is only ever checked against the bundle of
// its own trust domain. Safe for concurrent use.
type Bundles struct {
	mu      sync.RWMutex
	sources map[spiffeid.TrustDomain]BundleGetter
}

// NewBundles returns an empty set.
func NewBundles() *Bundles { return &Bundles{sources: map[spiffeid.TrustDomain]BundleGetter{}} }

// Add trusts td through src; a trust domain has one source.
func (b *Bundles) Add(td spiffeid.TrustDomain, src BundleGetter) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, dup := b.sources[td]; dup {
		return fmt.Errorf("federation: trust domain %s is configured twice", td)
	}
	b.sources[td] = src
	return nil
}

// Remove stops trusting td.
func (b *Bundles) Remove(td spiffeid.TrustDomain) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.sources, td)
}

// TrustDomains lists the trusted trust domains.
func (b *Bundles) TrustDomains() []spiffeid.TrustDomain {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]spiffeid.TrustDomain, 0, len(b.sources))
	for td := range b.sources {
		out = append(out, td)
	}
	return out
}

// ErrUntrustedDomain: no bundle is configured for the trust domain.
var ErrUntrustedDomain = errors.New("federation: trust domain not trusted")

// GetBundleForTrustDomain implements BundleGetter.
func (b *Bundles) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	b.mu.RLock()
	src, ok := b.sources[td]
	b.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUntrustedDomain, td)
	}
	bundle, err := src.GetBundleForTrustDomain(td)
	if err != nil {
		return nil, err
	}
	if bundle.TrustDomain() != td {
		return nil, fmt.Errorf("federation: the source of %s gave a bundle for %s", td, bundle.TrustDomain())
	}
	return bundle, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (b *Bundles) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	bundle, err := b.GetBundleForTrustDomain(td)
	if err != nil {
		return nil, err
	}
	return bundle.X509Bundle(), nil
}

// GetJWTBundleForTrustDomain implements jwtbundle.Source.
func (b *Bundles) GetJWTBundleForTrustDomain(td spiffeid.TrustDomain) (*jwtbundle.Bundle, error) {
	bundle, err := b.GetBundleForTrustDomain(td)
	if err != nil {
		return nil, err
	}
	return bundle.JWTBundle(), nil
}

// LoadBundleFile reads the bundle of td from a file: SPIFFE bundle JSON
// (X.509 and JWT authorities), or PEM certificates (X.509 only).
func LoadBundleFile(td spiffeid.TrustDomain, path string) (*spiffebundle.Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("federation: bundle of %s: %w", td, err)
	}
	if strings.HasPrefix(strings.TrimSpace(string(data)), "{") {
		b, err := spiffebundle.Parse(td, data)
		if err != nil {
			return nil, fmt.Errorf("federation: bundle of %s in %s: %w", td, path, err)
		}
		return b, nil
	}
	xb, err := x509bundle.Parse(td, data)
	if err != nil {
		return nil, fmt.Errorf("federation: bundle of %s in %s: %w", td, path, err)
	}
	return spiffebundle.FromX509Bundle(xb), nil
}

// BundleEndpointConfig configures a SPIFFE bundle endpoint (https_web or
// https_spiffe profile) of a federated trust domain.
type BundleEndpointConfig struct {
	TrustDomain spiffeid.TrustDomain
	URL         string
	// Options select the profile: spiffefed.WithWebPKIRoots (https_web)
	// or spiffefed.WithSPIFFEAuth (https_spiffe).
	Options []spiffefed.FetchOption
	// MinRefresh and MaxRefresh bound the endpoint's refresh hint
	// (defaults 1m and 1h; no hint: 5m within the bounds); StaleBound is
	// how long past its refresh time a bundle keeps serving while the
	// endpoint cannot be reached (default 24h).
	MinRefresh, MaxRefresh, StaleBound time.Duration
	Clock                              func() time.Time
	Log                                *slog.Logger
	Meter                              metric.Meter // nil: no metrics
}

// BundleEndpoint keeps a federated trust domain's bundle fresh from its
// bundle endpoint. Safe for concurrent use.
type BundleEndpoint struct {
	cfg     BundleEndpointConfig
	state   atomic.Pointer[endpointState]
	fetches metric.Int64Counter
	attrs   attribute.KeyValue
}

type endpointState struct {
	bundle               *spiffebundle.Bundle
	fetchedAt, refreshAt time.Time
}

// NewBundleEndpoint checks cfg; the bundle loads on Refresh or Run.
func NewBundleEndpoint(cfg BundleEndpointConfig) (*BundleEndpoint, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("federation: bundle endpoint without a trust domain")
	}
	if !strings.HasPrefix(cfg.URL, "https://") {
		return nil, fmt.Errorf("federation: bundle endpoint %q is not an https URL", cfg.URL)
	}
	setDefault(&cfg.MinRefresh, time.Minute)
	setDefault(&cfg.MaxRefresh, time.Hour)
	setDefault(&cfg.StaleBound, 24*time.Hour)
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Meter == nil {
		cfg.Meter = noop.Meter{}
	}
	e := &BundleEndpoint{cfg: cfg, attrs: attribute.String("trust_domain", cfg.TrustDomain.String())}
	e.fetches, _ = cfg.Meter.Int64Counter("mcpsts.federation.bundle.fetches",
		metric.WithDescription("SPIFFE bundle endpoint fetches, by trust domain and result"))
	age, _ := cfg.Meter.Float64ObservableGauge("mcpsts.federation.bundle.age", metric.WithUnit("s"),
		metric.WithDescription("how long ago a federated trust domain's bundle was fetched"))
	cfg.Meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if st := e.state.Load(); st != nil {
			o.ObserveFloat64(age, cfg.Clock().Sub(st.fetchedAt).Seconds(), metric.WithAttributes(e.attrs))
		}
		return nil
	}, age)
	return e, nil
}

// Refresh fetches the bundle now; a failure keeps the previous one.
func (e *BundleEndpoint) Refresh(ctx context.Context) error {
	b, err := spiffefed.FetchBundle(ctx, e.cfg.TrustDomain, e.cfg.URL, e.cfg.Options...)
	result := "ok"
	if err != nil {
		result = "error"
	}
	e.fetches.Add(ctx, 1, metric.WithAttributes(e.attrs, attribute.String("result", result)))
	if err != nil {
		return fmt.Errorf("federation: bundle endpoint of %s: %w", e.cfg.TrustDomain, err)
	}
	ttl, ok := b.RefreshHint()
	if !ok {
		ttl = 5 * time.Minute
	}
	ttl = min(max(ttl, e.cfg.MinRefresh), e.cfg.MaxRefresh)
	now := e.cfg.Clock()
	e.state.Store(&endpointState{bundle: b, fetchedAt: now, refreshAt: now.Add(ttl)})
	return nil
}

// GetBundleForTrustDomain implements BundleGetter: the last good bundle,
// up to StaleBound past its refresh time.
func (e *BundleEndpoint) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	st := e.state.Load()
	switch {
	case td != e.cfg.TrustDomain:
		return nil, fmt.Errorf("%w: %s", ErrUntrustedDomain, td)
	case st == nil:
		return nil, fmt.Errorf("%w: bundle of %s not loaded", ErrNotReady, td)
	case e.cfg.Clock().After(st.refreshAt.Add(e.cfg.StaleBound)):
		return nil, fmt.Errorf("%w: bundle of %s is stale beyond %s", ErrNotReady, td, e.cfg.StaleBound)
	}
	return st.bundle, nil
}

// Run refreshes the bundle on its refresh hint (bounded), retrying with
// backoff while the endpoint fails, until ctx is done.
func (e *BundleEndpoint) Run(ctx context.Context) {
	backoff := time.Second
	for {
		wait := backoff
		if err := e.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			e.cfg.Log.Warn("bundle endpoint unreachable: serving the last good bundle", "trust_domain", e.cfg.TrustDomain.String(), "error", err)
			backoff = min(2*backoff, 5*time.Minute)
		} else {
			backoff = time.Second
			st := e.state.Load()
			wait = st.refreshAt.Sub(st.fetchedAt)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// WorkloadAPISource is the bundles the local SPIFFE Workload API (a SPIRE
// agent) serves, kept live. It connects in the background: until the first
// update arrives every lookup answers ErrNotReady, and an agent that is
// down does not stop the server.
type WorkloadAPISource struct {
	src atomic.Pointer[workloadapi.BundleSource]
}

// NewWorkloadAPISource starts connecting to the Workload API at addr
// ("unix:///…"; empty means SPIFFE_ENDPOINT_SOCKET) and keeps retrying
// until ctx is done.
func NewWorkloadAPISource(ctx context.Context, addr string, log *slog.Logger) *WorkloadAPISource {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &WorkloadAPISource{}
	go func() {
		var opts []workloadapi.ClientOption
		if addr != "" {
			opts = append(opts, workloadapi.WithAddr(addr))
		}
		backoff := time.Second
		for ctx.Err() == nil {
			src, err := workloadapi.NewBundleSource(ctx, workloadapi.WithClientOptions(opts...))
			if err == nil {
				s.src.Store(src)
				<-ctx.Done()
				src.Close()
				return
			}
			log.Warn("SPIFFE Workload API unreachable", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
		}
	}()
	return s
}

// GetBundleForTrustDomain implements BundleGetter.
func (s *WorkloadAPISource) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	src := s.src.Load()
	if src == nil {
		return nil, fmt.Errorf("%w: the SPIFFE Workload API has not answered yet", ErrNotReady)
	}
	return src.GetBundleForTrustDomain(td)
}
