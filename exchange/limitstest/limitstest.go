// Package limitstest is the conformance suite of exchange.SharedLimits:
// every backend that replicas share their rate limits through runs it.
package limitstest

import (
	"context"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/exchange"
)

// Run checks that two handles on one backend (two replicas) take from one
// bucket: a burst of 3 holds across both, a refusal says how long to wait,
// the bucket refills at its rate and not before, keys do not share buckets,
// and a clock behind the bucket's last use does not mint tokens. open gives
// two handles on one fresh backend.
func Run(t *testing.T, open func(t *testing.T) (a, b exchange.SharedLimits)) {
	ctx := context.Background()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	a, b := open(t)
	take := func(s exchange.SharedLimits, key string, at time.Time) (bool, time.Duration) {
		t.Helper()
		ok, wait, err := s.Take(ctx, key, 2, 3, at)
		if err != nil {
			t.Fatal(err)
		}
		return ok, wait
	}
	const agent = "identity\x00ci/agent"
	for i, s := range []exchange.SharedLimits{a, b, a} {
		if ok, _ := take(s, agent, now); !ok {
			t.Fatalf("take %d of the burst refused", i+1)
		}
	}
	ok, wait := take(b, agent, now)
	if ok || wait < 400*time.Millisecond || wait > 500*time.Millisecond {
		t.Fatalf("past the burst on the other replica: %v, wait %s (want about 500ms at 2/s)", ok, wait)
	}
	if ok, _ := take(a, agent, now.Add(499*time.Millisecond)); ok {
		t.Fatal("a token before its time")
	}
	if ok, _ := take(b, agent, now.Add(501*time.Millisecond)); !ok {
		t.Fatal("no token after 500ms at 2/s")
	}
	// A replica whose clock is a second behind finds the bucket empty: a
	// clock going backwards refills nothing.
	if ok, _ := take(a, agent, now.Add(-time.Second)); ok {
		t.Fatal("a clock behind the bucket's last use was given a token")
	}
	if ok, _ := take(a, "client\x00other", now); !ok {
		t.Fatal("another key shares the bucket")
	}
	// Keys hold any bytes.
	if ok, _ := take(b, "identity\x00ci/{x}\n*?[]", now); !ok {
		t.Fatal("a key with special characters")
	}

	// A bucket left alone refills to its burst and no further: after an
	// hour, 3 takes and no fourth.
	const idle = "identity\x00ci/idle"
	for i := range 3 {
		if ok, _ := take(a, idle, now); !ok {
			t.Fatalf("idle: take %d refused", i+1)
		}
	}
	later := now.Add(time.Hour)
	for i := range 3 {
		if ok, _ := take(b, idle, later); !ok {
			t.Fatalf("an hour later: take %d of the burst refused", i+1)
		}
	}
	if ok, _ := take(a, idle, later); ok {
		t.Fatal("an hour later: a fourth token, beyond the burst")
	}

	// A replica behind does not mint tokens through the bucket's time: the
	// last token of the burst goes (to the replica 5 s behind where the
	// backend lets it, which must then not move the bucket's time back;
	// else to the one on time), and 400 ms later (0.8 of a token at 2/s)
	// there is none.
	const skew = "identity\x00ci/skew"
	for i := range 2 {
		if ok, _ := take(a, skew, now); !ok {
			t.Fatalf("skew: take %d refused", i+1)
		}
	}
	if ok, _ := take(b, skew, now.Add(-5*time.Second)); !ok {
		if ok, _ := take(a, skew, now); !ok {
			t.Fatal("skew: the last token of the burst refused")
		}
	}
	if ok, _ := take(a, skew, now.Add(400*time.Millisecond)); ok {
		t.Fatal("skew: a token 400ms after the bucket emptied at 2/s (the replica behind moved its time back)")
	}
}
