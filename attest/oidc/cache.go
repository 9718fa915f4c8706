package oidc

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpsts/mcpsts/attest"
)

// verifiedCache holds verified identities by the SHA-256 of their token.
// It is bounded: when full, the oldest entry goes. It keeps only tokens
// seen again: a token's first verification only notes its fingerprint (a
// doorkeeper of 8 bytes a token, cleared when it holds 4 times the cache's
// bound), so that a stream of tokens used once each, the usual shape of
// distinct workloads' requests, does not fill memory with entries that
// are never read.
type verifiedCache struct {
	max int

	mu      sync.Mutex
	entries map[[32]byte]cached
	order   [][32]byte // insertion order, for eviction
	seen    map[uint64]struct{}
}

type cached struct {
	id     attest.Identity
	p      *provider
	kid    string
	claims jwt.MapClaims
}

func newVerifiedCache(max int) *verifiedCache {
	return &verifiedCache{max: max, entries: map[[32]byte]cached{}, seen: map[uint64]struct{}{}}
}

// get returns the identity of a cached token that is still valid at now:
// the time claims hold again, and its key is still in its provider's set.
func (c *verifiedCache) get(sum [32]byte, now time.Time) (attest.Identity, bool) {
	c.mu.Lock()
	e, ok := c.entries[sum]
	c.mu.Unlock()
	if !ok {
		return attest.Identity{}, false
	}
	if e.p.validator.Validate(e.claims) != nil || !e.p.Keys.Has(e.kid) || tooOld(e, now) {
		c.mu.Lock()
		delete(c.entries, sum)
		c.mu.Unlock()
		return attest.Identity{}, false
	}
	return e.id, true
}

func tooOld(e cached, now time.Time) bool {
	iat, err := e.claims.GetIssuedAt()
	return err != nil || iat == nil || now.Sub(iat.Time) > e.p.MaxTokenAge+e.p.Leeway
}

func (c *verifiedCache) put(sum [32]byte, e cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[sum]; ok {
		return
	}
	fp := binary.LittleEndian.Uint64(sum[:8])
	if _, again := c.seen[fp]; !again {
		if len(c.seen) >= 4*c.max {
			clear(c.seen)
		}
		c.seen[fp] = struct{}{}
		return
	}
	delete(c.seen, fp)
	for len(c.entries) >= c.max && len(c.order) > 0 {
		delete(c.entries, c.order[0])
		c.order = c.order[1:]
	}
	c.entries[sum] = e
	c.order = append(c.order, sum)
	if len(c.order) > 2*c.max { // drop keys of entries deleted on get
		live := c.order[:0]
		for _, k := range c.order {
			if _, ok := c.entries[k]; ok {
				live = append(live, k)
			}
		}
		c.order = live
	}
}

func (c *verifiedCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
