package federation_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/federation/federationtest"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.now = c.now.Add(d) }

type fixture struct {
	is     *federationtest.Issuer
	p      *federation.Provider
	clock  *clock
	reader *sdkmetric.ManualReader
	logs   *lockedBuffer
}

func newProvider(t *testing.T, mutate func(*federation.ProviderConfig)) *fixture {
	t.Helper()
	f := &fixture{
		is:     federationtest.NewIssuer(t),
		clock:  &clock{now: time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC)},
		reader: sdkmetric.NewManualReader(),
		logs:   &lockedBuffer{},
	}
	cfg := federation.ProviderConfig{
		Name: "test", Issuer: f.is.URL, Discovery: true,
		Fetcher: f.is.Fetcher(), Clock: f.clock.Now,
		Log:   slog.New(slog.NewTextHandler(f.logs, nil)),
		Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.reader)).Meter("test"),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := federation.NewProvider(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.p = p
	return f
}

// counter sums a counter's points whose attributes include want.
func (f *fixture) counter(t *testing.T, name string, want map[string]string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := f.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
		points:
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				for k, v := range want {
					if got, ok := dp.Attributes.Value(attrKey(k)); !ok || got.AsString() != v {
						continue points
					}
				}
				total += dp.Value
			}
		}
	}
	return total
}

func TestDiscoveryAndKeyLookup(t *testing.T) {
	f := newProvider(t, nil)
	ctx := context.Background()
	if err := f.p.Ready(); !errors.Is(err, federation.ErrNotReady) {
		t.Fatalf("Ready before any load = %v", err)
	}
	k, err := f.p.Key(ctx, f.is.KeyID(), "RS256")
	if err != nil {
		t.Fatal(err)
	}
	if !publicEqual(k, f.is.PublicKey()) {
		t.Fatal("Key returned another key")
	}
	if f.is.Requests("discovery") != 1 || f.is.Requests("jwks") != 1 {
		t.Fatalf("requests: discovery %d, jwks %d; want 1 and 1", f.is.Requests("discovery"), f.is.Requests("jwks"))
	}
	for range 100 {
		if _, err := f.p.Key(ctx, f.is.KeyID(), "RS256"); err != nil {
			t.Fatal(err)
		}
	}
	if f.is.Requests("jwks") != 1 {
		t.Fatalf("a warm cache fetched again: %d JWKS requests", f.is.Requests("jwks"))
	}
	if err := f.p.Ready(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.Key(ctx, f.is.KeyID(), "ES256"); !errors.Is(err, federation.ErrUnknownKey) {
		t.Fatalf("RSA key for ES256 = %v, want ErrUnknownKey", err)
	}
	if _, err := f.p.Key(ctx, f.is.KeyID(), "PS256"); !errors.Is(err, federation.ErrUnknownKey) || !strings.Contains(err.Error(), `algorithm "PS256" is not allowed`) {
		t.Fatalf("algorithm not allowed = %v", err)
	}
	if _, err := f.p.Key(ctx, "", "RS256"); err != nil {
		t.Fatalf("no kid, one key = %v", err)
	}
	if got := f.counter(t, "mcpsts.federation.jwks.fetches", map[string]string{"provider": "test", "result": "ok"}); got != 1 {
		t.Fatalf("fetch metric = %d, want 1", got)
	}
}

func TestCacheControlBounds(t *testing.T) {
	tests := []struct {
		name     string
		maxAge   int
		wantNext time.Duration
	}{
		{"within bounds", 600, 10 * time.Minute},
		{"below minimum", 5, 5 * time.Minute},
		{"above maximum", 30 * 86400, 24 * time.Hour},
		{"absent", -1, time.Hour},
		{"zero", 0, 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newProvider(t, nil)
			f.is.SetMaxAge(tt.maxAge)
			ctx := context.Background()
			if err := f.p.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			f.clock.Add(tt.wantNext - time.Second)
			f.is.SetDown(true) // any fetch now would fail
			f.p.Key(ctx, f.is.KeyID(), "RS256")
			if got := f.counter(t, "mcpsts.federation.jwks.stale_lookups", nil); got != 0 {
				t.Fatalf("key set stale before %v", tt.wantNext)
			}
			f.clock.Add(2 * time.Second)
			f.p.Key(ctx, f.is.KeyID(), "RS256")
			if got := f.counter(t, "mcpsts.federation.jwks.stale_lookups", nil); got != 1 {
				t.Fatalf("key set not stale after %v (stale lookups %d)", tt.wantNext, got)
			}
		})
	}
}

func TestUnknownKidRefetchIsRateLimited(t *testing.T) {
	f := newProvider(t, nil)
	ctx := context.Background()
	if err := f.p.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// The issuer rotates: a token with the new kid arrives.
	kid2 := f.is.AddKey("ES256")
	f.clock.Add(time.Second)
	if _, err := f.p.Key(ctx, kid2, "ES256"); err != nil {
		t.Fatalf("new kid after rotation = %v, want a refetch to find it", err)
	}
	if got := f.is.Requests("jwks"); got != 2 {
		t.Fatalf("JWKS requests = %d, want 2", got)
	}
	// A flood of unknown kids costs at most one fetch per interval.
	for i := range 200 {
		if _, err := f.p.Key(ctx, "bogus-"+string(rune('a'+i%26)), "RS256"); !errors.Is(err, federation.ErrUnknownKey) {
			t.Fatalf("bogus kid = %v", err)
		}
	}
	if got := f.is.Requests("jwks"); got != 2 {
		t.Fatalf("JWKS requests after a flood within 30s of the last = %d, want still 2", got)
	}
	f.clock.Add(30 * time.Second)
	for range 50 {
		f.p.Key(ctx, "bogus", "RS256")
	}
	if got := f.is.Requests("jwks"); got != 3 {
		t.Fatalf("JWKS requests a full interval later = %d, want 3", got)
	}
}

// TestConcurrentLookupsOfANewKid: the issuer rotates and many requests
// bring the new kid at once: one fetch, and every lookup finds the key
// (those that could not fetch wait for the one that does).
func TestConcurrentLookupsOfANewKid(t *testing.T) {
	f := newProvider(t, nil)
	ctx := context.Background()
	if err := f.p.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	kid2 := f.is.AddKey("ES256")
	f.clock.Add(time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.p.Key(ctx, kid2, "ES256")
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a concurrent lookup of the new kid: %v", err)
		}
	}
	if got := f.is.Requests("jwks"); got != 2 {
		t.Fatalf("JWKS requests = %d, want 2", got)
	}
}

// TestStaleSetRefreshedOnUse: with no Run loop to refresh it (a machine
// suspended past the set's refresh time), a lookup of a stale set is
// answered from it at once and starts a refresh in the background, which
// brings the issuer's new key without an unknown-kid fetch; lookups in the
// next UnknownKidInterval start no other.
func TestStaleSetRefreshedOnUse(t *testing.T) {
	f := newProvider(t, nil)
	ctx := context.Background()
	if err := f.p.Refresh(ctx); err != nil { // max-age 300 → 5m
		t.Fatal(err)
	}
	kid1 := f.is.KeyID()
	kid2 := f.is.AddKey("ES256")
	if _, err := f.p.Key(ctx, kid1, "RS256"); err != nil || f.is.Requests("jwks") != 1 {
		t.Fatalf("a fresh set: %v, %d fetches", err, f.is.Requests("jwks"))
	}
	f.clock.Add(10 * time.Minute)
	if _, err := f.p.Key(ctx, kid1, "RS256"); err != nil {
		t.Fatalf("a stale set within its bound: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); !f.p.Has(kid2); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stale set was not refreshed in the background")
		}
	}
	for range 20 {
		f.p.Key(ctx, kid1, "RS256")
	}
	if got := f.is.Requests("jwks"); got != 2 {
		t.Fatalf("JWKS requests = %d, want 2", got)
	}
}

func TestStaleIfError(t *testing.T) {
	f := newProvider(t, func(c *federation.ProviderConfig) { c.StaleBound = 2 * time.Hour })
	ctx := context.Background()
	if err := f.p.Refresh(ctx); err != nil { // max-age 300 → 5m
		t.Fatal(err)
	}
	f.is.SetDown(true)
	f.clock.Add(10 * time.Minute)
	if err := f.p.Refresh(ctx); !errors.Is(err, federation.ErrFetch) {
		t.Fatalf("Refresh with the issuer down = %v", err)
	}
	if _, err := f.p.Key(ctx, f.is.KeyID(), "RS256"); err != nil {
		t.Fatalf("stale key set not served while the issuer is down: %v", err)
	}
	if f.p.Ready() != nil {
		t.Fatal("not ready while serving a stale set within its bound")
	}
	if !f.p.Has(f.is.KeyID()) || f.p.Has("another-kid") {
		t.Fatal("Has within the stale bound: the served key is not there, or another is")
	}
	if got := f.counter(t, "mcpsts.federation.jwks.stale_lookups", map[string]string{"provider": "test"}); got != 1 {
		t.Fatalf("stale metric = %d, want 1", got)
	}
	if got := f.counter(t, "mcpsts.federation.jwks.fetches", map[string]string{"result": "error"}); got != 1 {
		t.Fatalf("failed-fetch metric = %d, want 1", got)
	}
	f.clock.Add(2 * time.Hour)
	if _, err := f.p.Key(ctx, f.is.KeyID(), "RS256"); !errors.Is(err, federation.ErrNotReady) || !strings.Contains(err.Error(), "stale beyond 2h0m0s") {
		t.Fatalf("beyond the stale bound = %v, want ErrNotReady", err)
	}
	if !errors.Is(f.p.Ready(), federation.ErrNotReady) {
		t.Fatal("Ready beyond the stale bound")
	}
	// Verifiers re-check cached tokens with Has: beyond the bound no key
	// is there, so no cached token verifies either.
	if f.p.Has(f.is.KeyID()) {
		t.Fatal("Has beyond the stale bound")
	}
	f.is.SetDown(false)
	if err := f.p.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.Key(ctx, f.is.KeyID(), "RS256"); err != nil {
		t.Fatalf("after the issuer came back: %v", err)
	}
}

// TestRunRecovers starts a provider while its issuer is down: it is not
// ready, retries with backoff, logs, and becomes ready once the issuer is.
func TestRunRecovers(t *testing.T) {
	f := newProvider(t, func(c *federation.ProviderConfig) { c.Clock = nil })
	f.is.SetDown(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// Wait until Run has asked and been refused, then it must not be ready.
	for deadline := time.Now().Add(10 * time.Second); f.is.Requests("refused") == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Run never asked the issuer for its keys")
		}
	}
	if !errors.Is(f.p.Ready(), federation.ErrNotReady) {
		t.Fatal("ready while the issuer is down")
	}
	f.is.SetDown(false)
	deadline := time.Now().Add(10 * time.Second)
	for f.p.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatal("provider not ready 10s after its issuer came up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(f.logs.String(), "issuer keys unreachable: provider not ready") {
		t.Fatalf("no log line for the unreachable issuer: %s", f.logs)
	}
	// Once ready, it says so, once (Ready turns before Run logs).
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(f.logs.String(), "issuer keys loaded after failures"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line when the keys loaded: %s", f.logs)
		}
	}
	if n := strings.Count(f.logs.String(), "issuer keys loaded after failures"); n != 1 {
		t.Fatalf("%d lines for the keys loaded: %s", n, f.logs)
	}
}

func TestPinnedJWKS(t *testing.T) {
	is := federationtest.NewIssuer(t)
	p, err := federation.NewProvider(federation.ProviderConfig{
		Name: "pinned", Issuer: "https://kubernetes.default.svc.cluster.local", JWKS: is.JWKS(),
		Fetcher: is.Fetcher(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Ready(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Key(context.Background(), is.KeyID(), "RS256"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Key(context.Background(), "other", "RS256"); !errors.Is(err, federation.ErrUnknownKey) {
		t.Fatalf("unknown kid on a pinned set = %v", err)
	}
	if is.Requests("jwks")+is.Requests("discovery") != 0 {
		t.Fatal("a pinned provider fetched")
	}
}

func TestProviderConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  federation.ProviderConfig
		want []string
	}{
		{"no source", federation.ProviderConfig{Name: "a", Issuer: "https://a.example"}, []string{"want exactly one of discovery, jwks_uri and a pinned jwks, got 0"}},
		{"two sources", federation.ProviderConfig{Name: "a", Issuer: "https://a.example", Discovery: true, JWKSURI: "https://a.example/k"}, []string{"got 2"}},
		{"http jwks_uri", federation.ProviderConfig{Name: "a", Issuer: "https://a.example", JWKSURI: "http://a.example/k"}, []string{`jwks_uri: "http://a.example/k" is not an https URL`}},
		{"http issuer", federation.ProviderConfig{Name: "a", Issuer: "http://a.example", Discovery: true}, []string{`issuer: "http://a.example" is not an https URL`}},
		{"hmac and none", federation.ProviderConfig{Name: "a", Issuer: "https://a.example", Discovery: true, Algorithms: []string{"HS256", "none"}}, []string{`"HS256" is not allowed`, `"none" is not allowed`}},
		{"bad pinned set", federation.ProviderConfig{Name: "a", Issuer: "https://a.example", JWKS: []byte(`{"keys":[]}`)}, []string{"jwks: no public signature keys"}},
		{"private key pinned", federation.ProviderConfig{Name: "a", Issuer: "https://a.example", JWKS: []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)}, []string{"no public signature keys"}},
		{"refresh bounds", federation.ProviderConfig{Name: "a", Issuer: "https://a.example", Discovery: true, MinRefresh: time.Hour, MaxRefresh: time.Minute}, []string{"minimum 1h0m0s exceeds maximum 1m0s"}},
		{"no name", federation.ProviderConfig{Issuer: "https://a.example", Discovery: true}, []string{"name: required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := federation.NewProvider(tt.cfg)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestDiscoveryNamingAnotherIssuer(t *testing.T) {
	f := newProvider(t, nil)
	f.is.SetDiscoveryIssuer(f.is.URL + "/")
	if err := f.p.Refresh(context.Background()); err == nil || !strings.Contains(err.Error(), "names issuer") {
		t.Fatalf("Refresh = %v, want a discovery issuer mismatch", err)
	}
}

func TestFetcherHardening(t *testing.T) {
	var otherHits int
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { otherHits++ }))
	defer other.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte("x"), 2048)) })
	mux.HandleFunc("/same", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) })
	mux.HandleFunc("/offhost", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, other.URL+"/x", http.StatusFound) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) { time.Sleep(2 * time.Second) })
	mux.HandleFunc("/404", http.NotFound)
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	f := federation.NewFetcher(federation.FetcherOptions{Transport: srv.Client().Transport, MaxBytes: 1024, Timeout: 500 * time.Millisecond})
	ctx := context.Background()
	tests := []struct {
		url, wantErr string
	}{
		{srv.URL + "/ok", ""},
		{srv.URL + "/same", ""},
		{"http://" + strings.TrimPrefix(srv.URL, "https://") + "/ok", "is not an https URL"},
		{srv.URL + "/big", "response larger than 1024 bytes"},
		{srv.URL + "/offhost", "to another host or scheme"},
		{srv.URL + "/slow", "Client.Timeout"},
		{srv.URL + "/404", "status 404"},
	}
	for _, tt := range tests {
		_, err := f.Get(ctx, tt.url)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, federation.ErrFetch)) {
			t.Errorf("Get(%s) = %v, want %q", tt.url, err, tt.wantErr)
		}
	}
	if otherHits != 0 {
		t.Errorf("the fetcher followed a redirect to another host (%d requests there)", otherHits)
	}
}

// lockedBuffer is a log sink that a test reads while Run writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
