package posture

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/federation"
)

// PullConfig configures a source the broker asks for the posture of each
// verified identity: it POSTs {"identity": {...}} to URL and reads a JSON
// object of attributes back.
type PullConfig struct {
	Name string
	URL  string // https; asked as configured, redirects refused
	// Fetcher carries the request: its transport holds the broker's own
	// client certificate (mTLS, no static secret), its timeout and its size
	// cap bound the answer, and it must refuse redirects.
	Fetcher *federation.Fetcher
	// CacheTTL is how long an answer is reused (default 1m, at most 10m)
	// for exactly the same request (the SHA-256 of the body sent: the
	// identity with every attribute, so that two hosts of one subject are
	// asked each for their own); CacheEntries bounds the cache (default
	// 10,000). Failures are not cached. Time is the set's clock.
	CacheTTL     time.Duration
	CacheEntries int
	OnError      OnError
}

// MaxCacheTTL bounds PullConfig.CacheTTL.
const MaxCacheTTL = 10 * time.Minute

// Pull is a pulled source. It is safe for concurrent use.
type Pull struct {
	cfg   PullConfig
	cache *lru.Cache[[sha256.Size]byte, cachedPosture] // by the body sent; nil: no cache
}

type cachedPosture struct {
	posture attest.Posture
	until   time.Time
}

// NewPull checks cfg and makes its cache.
func NewPull(cfg PullConfig) (*Pull, error) {
	if cfg.OnError == "" {
		cfg.OnError = Deny
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = time.Minute
	}
	if cfg.CacheEntries == 0 {
		cfg.CacheEntries = 10_000
	}
	var errs []error
	if cfg.Fetcher == nil {
		errs = append(errs, fmt.Errorf("posture: source %q: no fetcher", cfg.Name))
	}
	if cfg.CacheTTL < 0 || cfg.CacheTTL > MaxCacheTTL {
		errs = append(errs, fmt.Errorf("posture: source %q: cache_ttl %s is out of range (0 to %s)", cfg.Name, cfg.CacheTTL, MaxCacheTTL))
	}
	if cfg.CacheEntries < 0 {
		errs = append(errs, fmt.Errorf("posture: source %q: cache_entries %d is negative", cfg.Name, cfg.CacheEntries))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p := &Pull{cfg: cfg}
	if cfg.CacheEntries > 0 {
		p.cache, _ = lru.New[[sha256.Size]byte, cachedPosture](cfg.CacheEntries)
	}
	return p, nil
}

// CacheLen is the number of answers cached.
func (p *Pull) CacheLen() int {
	if p.cache == nil {
		return 0
	}
	return p.cache.Len()
}

type pullRequest struct {
	Identity pullIdentity `json:"identity"`
}

type pullIdentity struct {
	Kind       string         `json:"kind,omitempty"`
	Provider   string         `json:"provider"`
	Issuer     string         `json:"issuer,omitempty"`
	Subject    string         `json:"subject"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

func (p *Pull) get(ctx context.Context, id attest.Identity, now time.Time) attest.Posture {
	fail := func(reason, detail string) attest.Posture {
		status := attest.PostureUnavailable
		if p.cfg.OnError == Absent {
			status = attest.PostureAbsent
		}
		return attest.Posture{Source: p.cfg.Name, Status: status, Reason: reason + ": " + detail}
	}
	buf := bodies.Get().(*bytes.Buffer)
	defer bodies.Put(buf)
	buf.Reset()
	if err := json.NewEncoder(buf).Encode(pullRequest{Identity: pullIdentity{
		Kind: id.Kind, Provider: id.Provider, Issuer: id.Issuer, Subject: id.Subject, Attributes: id.Attributes}}); err != nil {
		return fail("unreachable", "the identity cannot be encoded")
	}
	body := buf.Bytes()
	key := sha256.Sum256(body)
	if p.cache != nil {
		if got, ok := p.cache.Get(key); ok && now.Before(got.until) {
			return got.posture
		}
	}
	resp, err := p.cfg.Fetcher.Post(ctx, p.cfg.URL, body)
	if err != nil {
		return fail("unreachable", err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(resp.Body))
	dec.UseNumber()
	var attrs map[string]any
	if err := dec.Decode(&attrs); err != nil || attrs == nil || dec.More() {
		return fail("invalid_answer", "not a JSON object")
	}
	got := attest.Posture{Source: p.cfg.Name, Status: attest.PosturePresent, IssuedAt: now, Attributes: numbers(attrs).(map[string]any)}
	if p.cache != nil {
		p.cache.Add(key, cachedPosture{posture: got, until: now.Add(p.cfg.CacheTTL)})
	}
	return got
}

// bodies are the buffers requests are encoded in.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// numbers turns JSON numbers into CEL's int (when whole) or double.
func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	}
	return v
}
