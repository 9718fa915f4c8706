// Package redislimits keeps the per-identity and per-client token buckets
// of several replicas in Redis (limits.store: redis://…), as
// exchange.SharedLimits: one script run per take, atomic in Redis, and each
// bucket expires once it would be full again, so Redis holds only the
// callers of the last moments.
package redislimits

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpsts/mcpsts/exchange"
)

// keyPrefix namespaces the buckets in a Redis database shared with others
// (Options.KeyPrefix).
const keyPrefix = "mcpsts:rl:"

// take refills the bucket for the time since its last use (never for a
// clock behind it), takes a token when there is one, and otherwise says in
// microseconds how long until there is. ARGV: rate per microsecond, burst,
// now in microseconds.
var take = redis.NewScript(`
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 't', 'u')
local tokens, last = burst, now
if v[1] then
  last = math.max(now, tonumber(v[2]))
  tokens = math.min(burst, tonumber(v[1]) + math.max(0, now - tonumber(v[2])) * rate)
end
if tokens < 1 then
  return {0, math.ceil((1 - tokens) / rate)}
end
redis.call('HSET', KEYS[1], 't', tostring(tokens - 1), 'u', tostring(last))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate / 1000) + 1000)
return {1, 0}
`)

// Limits is a Redis client holding the buckets.
type Limits struct {
	client *redis.Client
	prefix string
}

var _ exchange.SharedLimits = (*Limits)(nil)

// Options configures the connection beyond the URL.
type Options struct {
	// Password authenticates to Redis (read from a file by the caller:
	// never in the URL, which is logged and shown in errors).
	Password string
	// Timeout bounds each call (default 250ms): past it the caller falls
	// back to its own buckets rather than hold a token request.
	Timeout time.Duration
	// KeyPrefix starts every bucket's key (default "mcpsts:rl:"): a
	// deployment, or a test, of its own in a shared database.
	KeyPrefix string
}

// New connects to the Redis at rawURL (redis://host:port[/db] or
// rediss://…); it does not dial until the first take.
func New(rawURL string, o Options) (*Limits, error) {
	if err := CheckURL(rawURL); err != nil {
		return nil, err
	}
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis: %s: %w", rawURL, err)
	}
	if o.Timeout == 0 {
		o.Timeout = 250 * time.Millisecond
	}
	opts.Password = o.Password
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = o.Timeout, o.Timeout, o.Timeout
	// A failed take falls back at once; retries only add latency.
	opts.MaxRetries, opts.DialerRetries = -1, 1
	if o.KeyPrefix == "" {
		o.KeyPrefix = keyPrefix
	}
	return &Limits{client: redis.NewClient(opts), prefix: o.KeyPrefix}, nil
}

// CheckURL reports what is wrong with a limits.store Redis URL: another
// scheme, no host, a password or query parameters (the URL is shown in
// logs and errors; the password belongs in a file).
func CheckURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	switch {
	case err != nil:
		return errors.New("not a URL")
	case u.Scheme != "redis" && u.Scheme != "rediss":
		return fmt.Errorf("scheme %q is not redis or rediss", u.Scheme)
	case u.Host == "":
		return errors.New("no host")
	case u.RawQuery != "" || u.Fragment != "":
		return errors.New("may not have query parameters or a fragment")
	}
	if _, ok := u.User.Password(); ok {
		return errors.New("holds a password: put it in limits.redis_password_file")
	}
	return nil
}

// Take implements exchange.SharedLimits.
func (l *Limits) Take(ctx context.Context, key string, rate float64, burst int, now time.Time) (bool, time.Duration, error) {
	if rate <= 0 || burst < 1 {
		return true, 0, nil
	}
	sum := sha256.Sum256([]byte(key)) // keys hold any bytes
	res, err := take.Run(ctx, l.client, []string{l.prefix + hex.EncodeToString(sum[:])},
		rate/1e6, burst, now.UnixMicro()).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("redis: rate limit: %w", err)
	}
	if len(res) != 2 {
		return false, 0, errors.New("redis: rate limit: unexpected answer")
	}
	if res[0] == 1 {
		return true, 0, nil
	}
	wait := time.Duration(min(res[1], math.MaxInt64/1000)) * time.Microsecond
	return false, max(wait, time.Millisecond), nil
}

// Ping checks that Redis answers.
func (l *Limits) Ping(ctx context.Context) error {
	if err := l.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// Close closes the connections.
func (l *Limits) Close() error { return l.client.Close() }
