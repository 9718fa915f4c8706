package client

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// TokenSource keeps a token for one (audience, scopes) fresh. It is safe
// for concurrent use: concurrent callers share one in-flight exchange. A
// token is refreshed once 80% of its lifetime has passed (minus up to 5%
// jitter, so that replicas do not refresh together); when a refresh fails
// the still-valid token is returned and the next attempt waits a backoff
// with jitter; an expired token is never returned.
type TokenSource struct {
	c        *Client
	audience string
	scopes   []string

	mu      sync.Mutex
	tok     *Token
	renewAt time.Time
	retryAt time.Time // after a failure
	backoff time.Duration
	flight  *flight
}

type flight struct {
	done chan struct{}
	tok  *Token
	err  error
}

// TokenSource returns the client's TokenSource for audience and scopes:
// the same one for the same pair, so that its cache is shared.
func (c *Client) TokenSource(audience string, scopes ...string) *TokenSource {
	key := audience + " " + strings.Join(scopes, " ")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sources == nil {
		c.sources = map[string]*TokenSource{}
	}
	if ts, ok := c.sources[key]; ok {
		return ts
	}
	ts := &TokenSource{c: c, audience: audience, scopes: scopes}
	c.sources[key] = ts
	return ts
}

// Token implements oauth2.TokenSource.
func (s *TokenSource) Token() (*oauth2.Token, error) {
	t, err := s.Get(context.Background())
	if err != nil {
		return nil, err
	}
	return &oauth2.Token{AccessToken: t.AccessToken, TokenType: t.TokenType, Expiry: t.Expiry}, nil
}

var _ oauth2.TokenSource = (*TokenSource)(nil)

// expirySkew: a token this close to expiry counts as expired.
const expirySkew = 10 * time.Second

// Get returns a valid token, exchanging for a new one when due.
func (s *TokenSource) Get(ctx context.Context) (*Token, error) {
	s.mu.Lock()
	now := s.c.now()
	valid := s.tok != nil && now.Before(s.tok.Expiry.Add(-expirySkew))
	if valid && (now.Before(s.renewAt) || now.Before(s.retryAt)) {
		tok := s.tok
		s.mu.Unlock()
		return tok, nil
	}
	f := s.flight
	if f == nil {
		f = &flight{done: make(chan struct{})}
		s.flight = f
		go s.refresh(f)
	}
	s.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if f.err != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.tok != nil && s.c.now().Before(s.tok.Expiry.Add(-expirySkew)) {
			return s.tok, nil // still valid: keep serving it
		}
		return nil, f.err
	}
	return f.tok, nil
}

// refresh runs one exchange for every caller waiting on f.
func (s *TokenSource) refresh(f *flight) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok, err := s.c.Exchange(ctx, s.audience, s.scopes)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.c.now()
	if err != nil {
		s.backoff = min(max(2*s.backoff, time.Second), 5*time.Minute)
		s.retryAt = now.Add(s.backoff/2 + rand.N(s.backoff/2+1))
	} else {
		life := tok.Expiry.Sub(now)
		jitter := time.Duration(rand.Int64N(int64(life)/20 + 1))
		s.tok, s.renewAt, s.retryAt, s.backoff = tok, now.Add(life*8/10-jitter), time.Time{}, 0
	}
	f.tok, f.err = tok, err
	s.flight = nil
	close(f.done)
}
