package resource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Introspection makes the middleware ask the broker (RFC 7662) whether each
// token is still active: revoked tokens and single-use tokens used before
// are then refused. Off by default: a token that verifies is accepted until
// it expires.
type Introspection struct {
	// URL is the broker's introspection endpoint.
	URL string
	// Assertion returns this server's own workload credential (a JWT its
	// platform gives it), sent as client_assertion; nil: the client
	// certificate of Transport authenticates (tls_client_auth).
	Assertion func(ctx context.Context) (string, error)
	// Transport carries the requests (nil: Config.Transport).
	Transport http.RoundTripper
	// CacheFor is how long an active answer is reused for a token (0:
	// 10s): the bound on how late a revocation reaches this server. An
	// inactive answer is kept until the token expires. Single-use tokens
	// are never answered from the cache.
	CacheFor time.Duration
}

const defaultIntrospectionCache = 10 * time.Second

// introspector asks the broker, through a bounded cache.
type introspector struct {
	cfg    Introspection
	client *http.Client
	clock  func() time.Time
	mu     sync.Mutex
	cache  *lru.Cache[string, introspected] // by jti
}

type introspected struct {
	active bool
	until  time.Time
}

func newIntrospector(c Introspection, transport http.RoundTripper, clock func() time.Time) *introspector {
	if c.CacheFor == 0 {
		c.CacheFor = defaultIntrospectionCache
	}
	if c.Transport == nil {
		c.Transport = transport
	}
	cache, _ := lru.New[string, introspected](defaultCacheSize)
	return &introspector{cfg: c, client: &http.Client{Transport: c.Transport, Timeout: 5 * time.Second}, clock: clock, cache: cache}
}

var errIntrospection = errors.New("resource: introspection failed")

// active reports whether the broker says the token is active.
func (in *introspector) active(ctx context.Context, raw string, c Claims, singleUse bool) (bool, error) {
	now := in.clock()
	if !singleUse {
		in.mu.Lock()
		got, ok := in.cache.Get(c.ID)
		in.mu.Unlock()
		if ok && now.Before(got.until) {
			return got.active, nil
		}
	}
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	if in.cfg.Assertion != nil {
		a, err := in.cfg.Assertion(ctx)
		if err != nil {
			return false, fmt.Errorf("%w: this server's credential: %v", errIntrospection, err)
		}
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", a)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.cfg.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return false, fmt.Errorf("%w: %v", errIntrospection, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := in.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("%w: %v", errIntrospection, err)
	}
	defer resp.Body.Close()
	var answer struct {
		Active bool `json:"active"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&answer) != nil {
		return false, fmt.Errorf("%w: the broker answered %s", errIntrospection, resp.Status)
	}
	until := now.Add(in.cfg.CacheFor)
	if !answer.Active {
		until = c.ExpiresAt
	}
	if !singleUse || !answer.Active {
		in.mu.Lock()
		in.cache.Add(c.ID, introspected{active: answer.Active, until: until})
		in.mu.Unlock()
	}
	return answer.Active, nil
}
