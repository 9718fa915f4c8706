package federation

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Algorithms a provider may allow. none and every HMAC algorithm are never
// accepted: a verifier holding only public keys must not be tricked into
// using one as a shared secret.
var supportedAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"}

// SupportedAlgorithms lists the algorithms a provider may allow.
func SupportedAlgorithms() []string { return slices.Clone(supportedAlgorithms) }

// ProviderConfig configures one trusted issuer.
type ProviderConfig struct {
	Name   string
	Issuer string // matched exactly
	// Exactly one key source: Discovery (OIDC discovery from Issuer), a
	// JWKSURI, or pinned JWKS (the key set itself).
	Discovery bool
	JWKSURI   string
	JWKS      []byte
	// Algorithms allowed for this issuer's tokens; empty means RS256 and
	// ES256.
	Algorithms []string
	// MinRefresh and MaxRefresh bound how long a fetched key set is used
	// before it is refreshed, whatever its Cache-Control says (defaults 5m
	// and 24h; a response without max-age is kept 1h within the bounds).
	MinRefresh, MaxRefresh time.Duration
	// UnknownKidInterval is the least time between two refetches caused by
	// a kid not in the key set (default 30s).
	UnknownKidInterval time.Duration
	// StaleBound is how long past its refresh time a key set keeps serving
	// while the issuer cannot be reached (default 24h).
	StaleBound time.Duration

	Fetcher *Fetcher         // nil means NewFetcher with defaults
	Clock   func() time.Time // nil means time.Now
	Log     *slog.Logger
	Meter   metric.Meter
}

// Provider holds the keys of one trusted issuer. It is safe for concurrent
// use; Key never blocks on the network except to load missing keys (first
// use, or an unknown kid), and then at most once per UnknownKidInterval.
type Provider struct {
	cfg    ProviderConfig
	algs   map[string]bool
	pinned bool

	state atomic.Pointer[keyState]

	fetchMu      sync.Mutex // one fetch at a time
	jwksURI      string     // configured or discovered; under fetchMu
	mu           sync.Mutex
	lastOnDemand time.Time   // last fetch caused by a lookup; under mu
	lastAttempt  time.Time   // last fetch of any cause; under mu
	lastErr      error       // last fetch failure, nil after a success; under mu
	refreshing   atomic.Bool // a refresh behind a stale lookup is under way

	fetches, stale metric.Int64Counter
	attrs          metric.MeasurementOption
}

type keyState struct {
	keys      []jose.JSONWebKey
	fetchedAt time.Time
	refreshAt time.Time // when to refresh; stale after
}

// Errors of Key, each wrapped with detail.
var (
	// ErrUnknownKey: the token names a key the issuer does not have, or an
	// algorithm the key does not fit.
	ErrUnknownKey = errors.New("federation: no such key")
	// ErrNotReady: the provider has no usable key set (never loaded, or
	// stale beyond its bound).
	ErrNotReady = errors.New("federation: provider not ready")
)

// NewProvider validates cfg and returns a provider. It does no I/O: remote
// keys load on Refresh, Run or first use.
func NewProvider(cfg ProviderConfig) (*Provider, error) {
	var errs []error
	if cfg.Name == "" {
		errs = append(errs, errors.New("name: required"))
	}
	if p := issuerProblem(cfg.Issuer); p != "" {
		errs = append(errs, errors.New("issuer: "+p))
	}
	sources := 0
	for _, set := range []bool{cfg.Discovery, cfg.JWKSURI != "", cfg.JWKS != nil} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		errs = append(errs, fmt.Errorf("keys: want exactly one of discovery, jwks_uri and a pinned jwks, got %d", sources))
	}
	if cfg.JWKSURI != "" {
		if u, err := url.Parse(cfg.JWKSURI); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("jwks_uri: %q is not an https URL", cfg.JWKSURI))
		}
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{"RS256", "ES256"}
	}
	algs := map[string]bool{}
	for _, a := range cfg.Algorithms {
		if !slices.Contains(supportedAlgorithms, a) {
			errs = append(errs, fmt.Errorf("algorithms: %q is not allowed (want some of %s)", a, strings.Join(supportedAlgorithms, ", ")))
		}
		algs[a] = true
	}
	setDefault(&cfg.MinRefresh, 5*time.Minute)
	setDefault(&cfg.MaxRefresh, 24*time.Hour)
	setDefault(&cfg.UnknownKidInterval, 30*time.Second)
	setDefault(&cfg.StaleBound, 24*time.Hour)
	if cfg.MinRefresh > cfg.MaxRefresh {
		errs = append(errs, fmt.Errorf("refresh: minimum %s exceeds maximum %s", cfg.MinRefresh, cfg.MaxRefresh))
	}
	p := &Provider{cfg: cfg, algs: algs, jwksURI: cfg.JWKSURI}
	if cfg.JWKS != nil {
		keys, err := parseKeySet(cfg.JWKS)
		if err != nil {
			errs = append(errs, fmt.Errorf("jwks: %w", err))
		}
		p.pinned = true
		never := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
		p.state.Store(&keyState{keys: keys, refreshAt: never})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("federation: provider %q: %w", cfg.Name, err)
	}
	if p.cfg.Fetcher == nil {
		p.cfg.Fetcher = NewFetcher(FetcherOptions{})
	}
	if p.cfg.Clock == nil {
		p.cfg.Clock = time.Now
	}
	if p.cfg.Log == nil {
		p.cfg.Log = slog.New(slog.DiscardHandler)
	}
	if p.cfg.Meter == nil {
		p.cfg.Meter = noop.Meter{}
	}
	p.fetches, _ = p.cfg.Meter.Int64Counter("mcpsts.federation.jwks.fetches",
		metric.WithDescription("JWKS fetches from trusted issuers, by result"))
	p.stale, _ = p.cfg.Meter.Int64Counter("mcpsts.federation.jwks.stale_lookups",
		metric.WithDescription("key lookups answered from a key set past its refresh time because the issuer could not be reached"))
	p.attrs = metric.WithAttributes(attribute.String("provider", cfg.Name))
	age, _ := p.cfg.Meter.Float64ObservableGauge("mcpsts.federation.jwks.age", metric.WithUnit("s"),
		metric.WithDescription("how long ago a trusted issuer's key set was fetched (stale past its refresh time)"))
	p.cfg.Meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if st := p.state.Load(); st != nil && !p.pinned {
			o.ObserveFloat64(age, p.cfg.Clock().Sub(st.fetchedAt).Seconds(), p.attrs)
		}
		return nil
	}, age)
	return p, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d == 0 {
		*d = v
	}
}

func issuerProblem(s string) string {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return "required"
	case err != nil || u.Scheme != "https" || u.Host == "":
		return fmt.Sprintf("%q is not an https URL", s)
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Sprintf("%q may not have a query or fragment", s)
	}
	return ""
}

// Name is the provider's configured name.
func (p *Provider) Name() string { return p.cfg.Name }

// Issuer is the issuer the provider trusts, exactly as configured.
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// Algorithms are the algorithms allowed for the provider's tokens.
func (p *Provider) Algorithms() []string { return slices.Clone(p.cfg.Algorithms) }

// KeySummary says how many keys the loaded key set holds (0 before the
// first load) and the algorithms they name, sorted, once each.
func (p *Provider) KeySummary() (count int, algorithms []string) {
	st := p.state.Load()
	if st == nil {
		return 0, nil
	}
	for _, k := range st.keys {
		if k.Algorithm != "" && !slices.Contains(algorithms, k.Algorithm) {
			algorithms = append(algorithms, k.Algorithm)
		}
	}
	slices.Sort(algorithms)
	return len(st.keys), algorithms
}

// Key returns the issuer's public key kid for a token signed with alg. An
// empty kid is accepted only when exactly one key fits alg.
func (p *Provider) Key(ctx context.Context, kid, alg string) (crypto.PublicKey, error) {
	if !p.algs[alg] {
		return nil, fmt.Errorf("%w: algorithm %q is not allowed for provider %s", ErrUnknownKey, alg, p.cfg.Name)
	}
	st, err := p.usable(ctx)
	if err != nil {
		return nil, err
	}
	if k, err := st.find(kid, alg); err == nil || p.pinned {
		return k, err
	}
	// Not there: the issuer may have rotated. Refetch, at most once per
	// interval, so that a flood of bad kids cannot make us hammer it.
	if !p.takeOnDemand() {
		// Another lookup's fetch may be under way (the issuer's new key,
		// seen by many requests at once): wait for it and look again.
		p.fetchMu.Lock()
		p.fetchMu.Unlock()
		if k, err := p.state.Load().find(kid, alg); err == nil {
			return k, nil
		}
		return nil, fmt.Errorf("%w: kid %q not in the key set of provider %s", ErrUnknownKey, kid, p.cfg.Name)
	}
	if err := p.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("%w: kid %q not in the key set of provider %s, and refetching failed", ErrUnknownKey, kid, p.cfg.Name)
	}
	return p.state.Load().find(kid, alg)
}

// usable returns the key set to verify with now, loading it if there is
// none yet and counting the lookups a stale set answers.
func (p *Provider) usable(ctx context.Context) (*keyState, error) {
	st := p.state.Load()
	if st == nil {
		if !p.takeOnDemand() {
			return nil, fmt.Errorf("%w: %s: keys not loaded (%v)", ErrNotReady, p.cfg.Name, p.lastError())
		}
		if err := p.Refresh(ctx); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrNotReady, p.cfg.Name, err)
		}
		st = p.state.Load()
	}
	now := p.cfg.Clock()
	if now.After(st.refreshAt) {
		p.refreshBehind(now)
		if now.After(st.refreshAt.Add(p.cfg.StaleBound)) {
			return nil, fmt.Errorf("%w: %s: key set fetched %s is stale beyond %s", ErrNotReady, p.cfg.Name, st.fetchedAt.UTC().Format(time.RFC3339), p.cfg.StaleBound)
		}
		p.stale.Add(ctx, 1, p.attrs)
	}
	return st, nil
}

// refreshBehind starts a refresh in the background when a lookup finds the
// set past its refresh time and nothing has fetched for UnknownKidInterval:
// Run's timer counts monotonic time, which stands still while a machine is
// suspended, so wall time can pass a set's refresh time with no refresh
// coming. The lookup does not wait: the stale set serves within its bound.
func (p *Provider) refreshBehind(now time.Time) {
	p.mu.Lock()
	due := now.Sub(p.lastAttempt) >= p.cfg.UnknownKidInterval
	p.mu.Unlock()
	if !due || !p.refreshing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer p.refreshing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		p.Refresh(ctx) // a failure is kept for Ready and the logs, as Run's are
	}()
}

// takeOnDemand reports whether a lookup may fetch now, and if so records it.
func (p *Provider) takeOnDemand() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Clock()
	if !p.lastOnDemand.IsZero() && now.Sub(p.lastOnDemand) < p.cfg.UnknownKidInterval {
		return false
	}
	p.lastOnDemand = now
	return true
}

func (p *Provider) lastError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

func (st *keyState) find(kid, alg string) (crypto.PublicKey, error) {
	var match []jose.JSONWebKey
	for _, k := range st.keys {
		if (kid == "" || k.KeyID == kid) && fits(k, alg) {
			match = append(match, k)
		}
	}
	switch {
	case len(match) == 1:
		return match[0].Key, nil
	case kid == "" && len(match) > 1:
		return nil, fmt.Errorf("%w: token has no kid and %d keys fit %s", ErrUnknownKey, len(match), alg)
	case len(match) > 1:
		return nil, fmt.Errorf("%w: kid %q is not unique in the key set", ErrUnknownKey, kid)
	}
	return nil, fmt.Errorf("%w: no key %q for %s", ErrUnknownKey, kid, alg)
}

// fits reports whether key k may verify alg: its type matches, and its own
// alg, when it names one, is alg.
func fits(k jose.JSONWebKey, alg string) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return (alg == "ES256" && pub.Curve.Params().Name == "P-256") || (alg == "ES384" && pub.Curve.Params().Name == "P-384")
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// parseKeySet reads a JWKS, keeping the public signature keys of types we
// verify with; a set without any is an error.
func parseKeySet(data []byte) ([]jose.JSONWebKey, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JWK set: %v", err)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		if !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		switch k.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no public signature keys in the JWK set")
	}
	return keys, nil
}

// Refresh fetches the key set now (discovering its URL first when
// configured to). A failure keeps the previous set.
func (p *Provider) Refresh(ctx context.Context) error {
	if p.pinned {
		return nil
	}
	p.fetchMu.Lock()
	defer p.fetchMu.Unlock()
	err := p.fetch(ctx)
	result := "ok"
	if err != nil {
		result = "error"
	}
	p.fetches.Add(ctx, 1, p.attrs, metric.WithAttributes(attribute.String("result", result)))
	p.mu.Lock()
	p.lastErr, p.lastAttempt = err, p.cfg.Clock()
	p.mu.Unlock()
	return err
}

func (p *Provider) fetch(ctx context.Context) error {
	if p.jwksURI == "" {
		uri, err := discover(ctx, p.cfg.Fetcher, p.cfg.Issuer)
		if err != nil {
			return err
		}
		p.jwksURI = uri
	}
	resp, err := p.cfg.Fetcher.Get(ctx, p.jwksURI)
	if err != nil {
		if p.cfg.Discovery {
			p.jwksURI = "" // discover again next time: the issuer may have moved its keys
		}
		return err
	}
	keys, err := parseKeySet(resp.Body)
	if err != nil {
		return fmt.Errorf("federation: %s: %w", p.jwksURI, err)
	}
	now := p.cfg.Clock()
	ttl := maxAge(resp.Header, time.Hour)
	ttl = min(max(ttl, p.cfg.MinRefresh), p.cfg.MaxRefresh)
	p.state.Store(&keyState{keys: keys, fetchedAt: now, refreshAt: now.Add(ttl)})
	return nil
}

// maxAge reads Cache-Control max-age, or returns def.
func maxAge(h http.Header, def time.Duration) time.Duration {
	for _, v := range h.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			d = strings.TrimSpace(d)
			if name, val, ok := strings.Cut(d, "="); ok && strings.EqualFold(name, "max-age") {
				if s, err := strconv.Atoi(strings.Trim(val, `"`)); err == nil && s >= 0 {
					return time.Duration(s) * time.Second
				}
			}
			if strings.EqualFold(d, "no-store") || strings.EqualFold(d, "no-cache") {
				return 0
			}
		}
	}
	return def
}

// discover reads the issuer's OIDC discovery document and returns its
// jwks_uri. The document must name the issuer exactly.
func discover(ctx context.Context, f *Fetcher, issuer string) (string, error) {
	resp, err := f.Get(ctx, strings.TrimSuffix(issuer, "/")+"/.well-known/openid-configuration")
	if err != nil {
		return "", err
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(resp.Body, &doc); err != nil {
		return "", fmt.Errorf("federation: discovery document of %s: %v", issuer, err)
	}
	if doc.Issuer != issuer {
		return "", fmt.Errorf("federation: discovery document of %s names issuer %q", issuer, doc.Issuer)
	}
	if u, err := url.Parse(doc.JWKSURI); err != nil || u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("federation: discovery document of %s: jwks_uri %q is not an https URL", issuer, doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}

// Has reports whether the key set in use still holds kid, without
// fetching: a cached verification is dropped once its key rotates away.
func (p *Provider) Has(kid string) bool {
	st := p.state.Load()
	if st == nil || p.cfg.Clock().After(st.refreshAt.Add(p.cfg.StaleBound)) {
		return false
	}
	for _, k := range st.keys {
		if k.KeyID == kid {
			return true
		}
	}
	return false
}

// Ready reports whether the provider has a key set it may verify with.
func (p *Provider) Ready() error {
	st := p.state.Load()
	if st == nil {
		return fmt.Errorf("%w: %s: keys not loaded (%v)", ErrNotReady, p.cfg.Name, p.lastError())
	}
	if p.cfg.Clock().After(st.refreshAt.Add(p.cfg.StaleBound)) {
		return fmt.Errorf("%w: %s: key set stale beyond %s", ErrNotReady, p.cfg.Name, p.cfg.StaleBound)
	}
	return nil
}

// Run keeps the key set fresh until ctx is done: it loads it (retrying with
// backoff while the issuer cannot be reached), then refreshes it at 80% of
// its lifetime; while refreshes fail it retries with backoff and the
// previous set keeps serving, up to StaleBound past its refresh time.
func (p *Provider) Run(ctx context.Context) {
	if p.pinned {
		return
	}
	backoff := time.Second
	failing := false // the last attempt failed: the next success says so
	for {
		var wait time.Duration
		err := p.Refresh(ctx)
		st := p.state.Load()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			failing = true
			if st != nil {
				p.cfg.Log.Warn("issuer keys unreachable: serving the last good key set", "provider", p.cfg.Name,
					"fetched_at", st.fetchedAt, "stale_after", st.refreshAt, "serving_until", st.refreshAt.Add(p.cfg.StaleBound), "error", err)
			} else {
				p.cfg.Log.Warn("issuer keys unreachable: provider not ready", "provider", p.cfg.Name, "error", err)
			}
			wait = backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, 5*time.Minute)
		default:
			if failing {
				p.cfg.Log.Info("issuer keys loaded after failures", "provider", p.cfg.Name, "keys", len(st.keys))
				failing = false
			}
			backoff = time.Second
			wait = st.refreshAt.Sub(st.fetchedAt) * 8 / 10
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
