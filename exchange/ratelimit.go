package exchange

import (
	"cmp"
	"context"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
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

// SourcePrefixes are the prefix lengths the per-source limits key on (0:
// 32 for IPv4, one address; 64 for IPv6, one site's /64, whose addresses
// a host picks freely).
type SourcePrefixes struct{ IPv4, IPv6 int }

// SourceLimiter limits the requests of each source (its address within
// its prefix), before anything of a request is read. It is safe for
// concurrent use.
type SourceLimiter struct {
	buckets  *keyedLimiter
	prefixes SourcePrefixes
}

// NewSourceLimiter returns a limiter of limit per source (a zero Rate
// limits nothing).
func NewSourceLimiter(limit RateLimit, prefixes SourcePrefixes, clock func() time.Time) *SourceLimiter {
	if clock == nil {
		clock = time.Now
	}
	return &SourceLimiter{buckets: newKeyedLimiter(limit, clock), prefixes: prefixes}
}

// Allow takes a token of r's source; when there is none it says how long
// until there is.
func (s *SourceLimiter) Allow(r *http.Request) (bool, time.Duration) {
	return s.buckets.allow(s.prefixes.key(r))
}

// Handler answers 429 with Retry-After to a source past its limit, before
// h reads anything of the request (nor logs, audits or fetches for it).
func (s *SourceLimiter) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := s.Allow(r); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			http.Error(w, "too many requests from this address; retry later", http.StatusTooManyRequests)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// key is the per-source limit key of r: its source address within its
// prefix.
func (p SourcePrefixes) key(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap().WithZone("")
	bits := cmp.Or(p.IPv4, 32)
	if a.Is6() {
		bits = cmp.Or(p.IPv6, 64)
	}
	pre, err := a.Prefix(bits)
	if err != nil {
		return host
	}
	return pre.String()
}

// SharedLimits keeps token buckets that replicas share (in their store):
// Take takes a token from key's bucket (rate per second, burst), or says
// how long until one is there.
type SharedLimits interface {
	Take(ctx context.Context, key string, rate float64, burst int, now time.Time) (ok bool, wait time.Duration, err error)
}

// limiter is a per-key limit: shared by the replicas when shared is set
// (falling back to this process's buckets when the store cannot answer),
// this process's own otherwise.
type limiter struct {
	local  *keyedLimiter
	shared SharedLimits
	name   string // the bucket's prefix: identity, client
	onFail func(error)
}

func (l *limiter) allow(ctx context.Context, key string) (bool, time.Duration) {
	if l.local == nil || l.local.limit.Rate <= 0 {
		return true, 0
	}
	if l.shared != nil {
		ok, wait, err := l.shared.Take(ctx, l.name+"\x00"+key, l.local.limit.Rate, l.local.limit.Burst, l.local.now())
		if err == nil {
			return ok, wait
		}
		l.onFail(err)
	}
	return l.local.allow(key)
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
