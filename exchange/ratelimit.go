package exchange

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimit is a token bucket: Rate requests per second on average, Burst
// at once. A zero Rate means no limit.
type RateLimit struct {
	Rate  float64
	Burst int
}

// keyedLimiter keeps one token bucket per key (an identity, a client). It
// is safe for concurrent use and bounded: when it holds maxKeys buckets it
// drops those that are full again, whose keys have been quiet.
type keyedLimiter struct {
	limit   RateLimit
	now     func() time.Time
	maxKeys int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newKeyedLimiter(l RateLimit, now func() time.Time) *keyedLimiter {
	if l.Burst < 1 {
		l.Burst = 1
	}
	return &keyedLimiter{limit: l, now: now, maxKeys: 100_000, buckets: map[string]*rate.Limiter{}}
}

// allow takes a token for key; when there is none it says how long until
// there is.
func (k *keyedLimiter) allow(key string) (bool, time.Duration) {
	if k == nil || k.limit.Rate <= 0 {
		return true, 0
	}
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	b, ok := k.buckets[key]
	if !ok {
		if len(k.buckets) >= k.maxKeys {
			k.sweep(now)
		}
		b = rate.NewLimiter(rate.Limit(k.limit.Rate), k.limit.Burst)
		k.buckets[key] = b
	}
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

func (k *keyedLimiter) sweep(now time.Time) {
	for key, b := range k.buckets {
		if b.TokensAt(now) >= float64(k.limit.Burst) {
			delete(k.buckets, key)
		}
	}
}
