package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReplicaThroughput (opt-in: MCPSTS_SCALE=1) measures token exchanges
// per second through a round-robin proxy in front of one and then two
// `mcpsts serve` processes on one PostgreSQL, with distinct subject tokens
// (signed before the timed window) over keep-alive connections, with the
// rate-limit buckets in the store (the default on PostgreSQL) and in
// memory (MCPSTS_SCALE_LIMITS: a comma-separated list of limits.store
// values, e.g. store,memory,redis://127.0.0.1:6379/15), in alternating
// rounds (MCPSTS_SCALE_ROUNDS, default 3). The figures are in
// docs/SCALING.md.
func TestReplicaThroughput(t *testing.T) {
	if os.Getenv("MCPSTS_SCALE") == "" {
		t.Skip("opt-in: MCPSTS_SCALE=1")
	}
	f := newReplicaFixture(t)
	const files = "https://files.example.com/mcp"
	const sts = "https://sts.example.com"
	os.WriteFile(filepath.Join(f.maps, "m.yaml"), []byte(`id: agent
match: {provider: ci, subject_pattern: "agent-.*"}
grant: {client_id: agent, audiences: ["`+files+`"]}
`), 0o600)
	cert, key, ca := productionFiles(t)
	start := func(limits string) string {
		cmd, addr, stderr := startBinary(t, nil, "serve", "--config", writeConfig(t, fmt.Sprintf(`issuer: %s
listen: 127.0.0.1:0
store: %s
data_dir: %s
tls: {cert_file: %s, key_file: %s}
keys: {kek_file: %s}
trust_maps: {paths: [%s]}
limits: {store: %s, per_identity: {rate: 100000, burst: 100000}, per_client: {rate: 100000, burst: 100000}, per_source: {rate: 0}}
providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}
`, sts, f.pg, t.TempDir(), cert, key, f.kek, f.maps, limits, f.idp.URL, f.idpCA)))
		t.Cleanup(func() { terminate(t, cmd, stderr) })
		return addr
	}
	const workers, window = 16, 5 * time.Second
	var seq atomic.Int64
	tokens := func(n int) []string {
		out := make([]string, n)
		now := time.Now().Unix()
		for i := range out {
			out[i] = f.idp.Sign(map[string]any{"iss": f.idp.URL, "sub": fmt.Sprintf("agent-%d", i%100), "aud": sts, "iat": now, "exp": now + 600, "jti": fmt.Sprint(seq.Add(1))}, nil)
		}
		return out
	}
	run := func(lb string) float64 {
		toks := tokens(25000)
		tr := clientTrusting(t, ca).Transport.(*http.Transport)
		tr.MaxIdleConnsPerHost = workers
		c := &http.Client{Transport: tr}
		var next, done atomic.Int64
		var wg sync.WaitGroup
		deadline := time.Now().Add(window)
		begin := time.Now()
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					i := next.Add(1) - 1
					if int(i) >= len(toks) {
						return
					}
					resp, err := c.PostForm("https://"+lb+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
						"subject_token": {toks[i]}, "subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {files}})
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Errorf("status %d", resp.StatusCode)
						return
					}
					done.Add(1)
				}
			}()
		}
		wg.Wait()
		tr.CloseIdleConnections()
		return float64(done.Load()) / time.Since(begin).Seconds()
	}
	results := map[string][]float64{}
	kinds := []string{"store", "memory"}
	if v := os.Getenv("MCPSTS_SCALE_LIMITS"); v != "" { // e.g. store,memory,redis://127.0.0.1:6379/15
		kinds = strings.Split(v, ",")
	}
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("MCPSTS_SCALE_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	for _, limits := range kinds {
		one := start(limits)
		two := []string{one, start(limits)}
		lbOne, lbTwo := roundRobin(t, one), roundRobin(t, two...)
		run(lbOne) // warm up: keys, caches
		run(lbTwo)
		for range rounds {
			results[limits+"/1"] = append(results[limits+"/1"], run(lbOne))
			results[limits+"/2"] = append(results[limits+"/2"], run(lbTwo))
		}
	}
	var lines []string
	for k, v := range results {
		slices.Sort(v)
		lines = append(lines, fmt.Sprintf("limits %s replicas: %.0f req/s median (%.0f–%.0f)", k, v[len(v)/2], v[0], v[len(v)-1]))
	}
	slices.Sort(lines)
	t.Logf("%d cores, %d connections, %s windows:\n%s", runtime.NumCPU(), workers, window, strings.Join(lines, "\n"))
}
