package resource_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpsts/mcpsts/resource"
)

// introspectionServer answers RFC 7662 requests from a table of active
// jtis, and counts them.
type introspectionServer struct {
	mu         sync.Mutex
	active     map[string]bool
	calls      atomic.Int32
	assertions []string
	down       bool
}

func (s *introspectionServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		http.Error(w, "down", http.StatusInternalServerError)
		return
	}
	s.assertions = append(s.assertions, r.PostFormValue("client_assertion"))
	c := jwt.MapClaims{}
	jwt.NewParser().ParseUnverified(r.PostFormValue("token"), c)
	jti, _ := c["jti"].(string)
	active := s.active[jti]
	if c["single_use"] == true {
		s.active[jti] = false // claimed by this use
	}
	json.NewEncoder(w).Encode(map[string]any{"active": active})
}

// TestIntrospectionAtTheResource: with introspection on, a revoked token is
// refused once the cache of its active answer runs out (CacheFor, the
// staleness bound), a single-use token is asked about every time and
// accepted once, and an unreachable broker is 503, not acceptance.
func TestIntrospectionAtTheResource(t *testing.T) {
	is := &introspectionServer{active: map[string]bool{"j-live": true, "j-once": true}}
	isrv := httptest.NewTLSServer(is)
	defer isrv.Close()
	var clk clock
	clk.now.Store(time.Now().UnixNano())
	f := newFixture(t, func(c *resource.Config) {
		c.Clock = clk.Now
		c.Introspection = &resource.Introspection{URL: isrv.URL, Transport: isrv.Client().Transport, CacheFor: 10 * time.Second,
			Assertion: func(context.Context) (string, error) { return "server-credential", nil }}
	})
	live := f.token(map[string]any{"jti": "j-live"}, nil)
	ok := func(tok string) int { return f.do(t, call{auth: "Bearer " + tok}).status }
	if got := ok(live); got != 200 || is.calls.Load() != 1 || is.assertions[0] != "server-credential" {
		t.Fatalf("first use: %d, %d calls, %v", got, is.calls.Load(), is.assertions)
	}
	if got := ok(live); got != 200 || is.calls.Load() != 1 {
		t.Fatalf("within CacheFor: %d, %d calls", got, is.calls.Load())
	}
	is.mu.Lock()
	is.active["j-live"] = false // revoked at the broker
	is.mu.Unlock()
	clk.now.Add(int64(9 * time.Second))
	if got := ok(live); got != 200 {
		t.Fatalf("revoked, 9 s later (inside the staleness bound): %d", got)
	}
	clk.now.Add(int64(2 * time.Second))
	if a := f.do(t, call{auth: "Bearer " + live}); a.status != 401 || a.code != "invalid_token" || is.calls.Load() != 2 {
		t.Fatalf("revoked, 11 s later: %+v, %d calls", a, is.calls.Load())
	}
	once := f.token(map[string]any{"jti": "j-once", "single_use": true}, nil)
	if got := ok(once); got != 200 {
		t.Fatalf("a single-use token, first use: %d", got)
	}
	if a := f.do(t, call{auth: "Bearer " + once}); a.status != 401 || a.desc != "the token is no longer active (revoked, or a single-use token used before)" {
		t.Fatalf("a single-use token, second use: %+v", a)
	}
	is.mu.Lock()
	is.down = true
	is.mu.Unlock()
	if a := f.do(t, call{auth: "Bearer " + f.token(map[string]any{"jti": "j-new"}, nil)}); a.status != 503 || a.code != "temporarily_unavailable" {
		t.Fatalf("the broker down: %+v", a)
	}
}
