package redislimits

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/exchange/limitstest"
)

// testURL is the Redis of MCPSTS_TEST_REDIS (redis://127.0.0.1:6379/15 in
// CI); the tests skip without it, and fail under CI.
func testURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("MCPSTS_TEST_REDIS")
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("MCPSTS_TEST_REDIS is not set under CI")
		}
		t.Skip("MCPSTS_TEST_REDIS not set: no Redis for this test")
	}
	return u
}

func open(t testing.TB, u string) *Limits {
	t.Helper()
	return openWith(t, u, Options{})
}

func openWith(t testing.TB, u string, o Options) *Limits {
	t.Helper()
	l, err := New(u, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestSharedLimitsConformance: two clients of one Redis are two replicas
// sharing their buckets.
func TestSharedLimitsConformance(t *testing.T) {
	u := testURL(t)
	t.Run("redis", func(t *testing.T) {
		limitstest.Run(t, func(t *testing.T) (exchange.SharedLimits, exchange.SharedLimits) {
			// A fresh backend: buckets under a prefix of this run's own,
			// removed at its end; other tests' buckets in the same
			// database (cmd/mcpsts's replicas) are never touched.
			o := Options{KeyPrefix: fmt.Sprintf("%stest-%d:", keyPrefix, time.Now().UnixNano())}
			a, b := openWith(t, u, o), openWith(t, u, o)
			t.Cleanup(func() {
				opts, _ := redis.ParseURL(u)
				c := redis.NewClient(opts)
				defer c.Close()
				if keys, _ := c.Keys(context.Background(), o.KeyPrefix+"*").Result(); len(keys) > 0 {
					c.Del(context.Background(), keys...)
				}
			})
			return a, b
		})
	})
}

// TestBucketsExpire: a bucket lives in Redis only until it would be full
// again (plus a second), so Redis holds only recent callers.
func TestBucketsExpire(t *testing.T) {
	u := testURL(t)
	l := open(t, u)
	ctx := context.Background()
	key := fmt.Sprintf("identity\x00ci/expire-%d", time.Now().UnixNano())
	if ok, _, err := l.Take(ctx, key, 10, 5, time.Now()); !ok || err != nil {
		t.Fatalf("take: %v %v", ok, err)
	}
	sum := sha256.Sum256([]byte(key))
	ttl, err := l.client.PTTL(ctx, l.prefix+hex.EncodeToString(sum[:])).Result()
	if err != nil || ttl <= 0 || ttl > 1500*time.Millisecond { // 5 at 10/s: full in 500ms, + 1s
		t.Fatalf("the bucket expires in %s (%v)", ttl, err)
	}
}

// TestUnreachable: a Redis that does not answer fails the take quickly
// (the token endpoint then falls back to the process's own buckets), and
// the error names no secret.
func TestUnreachable(t *testing.T) {
	l := open(t, "redis://127.0.0.1:1/0")
	start := time.Now()
	_, _, err := l.Take(context.Background(), "k", 1, 1, time.Now())
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("take on a closed port: %v after %s", err, time.Since(start))
	}
}

func TestCheckURL(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"redis://127.0.0.1:6379/0", ""},
		{"rediss://redis.internal:6380", ""},
		{"redis://user@127.0.0.1:6379", ""},
		{"redis://:s3cret@127.0.0.1:6379", "holds a password"},
		{"redis://user:s3cret@127.0.0.1:6379", "holds a password"},
		{"http://127.0.0.1:6379", `scheme "http" is not redis or rediss`},
		{"redis:///0", "no host"},
		{"redis://127.0.0.1:6379/0?password=x", "query parameters"},
		{"redis://[::1", "not a URL"},
	} {
		err := CheckURL(tc.url)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.url, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.url, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "s3cret"):
			t.Errorf("%s: the error shows the password: %v", tc.url, err)
		}
	}
}

// BenchmarkTake measures one take (a token request makes two: identity and
// client), keys spread over 1,000 identities.
func BenchmarkTake(b *testing.B) {
	l := open(b, testURL(b))
	ctx := context.Background()
	i := 0
	for b.Loop() {
		if _, _, err := l.Take(ctx, fmt.Sprintf("identity\x00ci/agent-%d", i%1000), 1e6, 1e6, time.Now()); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
