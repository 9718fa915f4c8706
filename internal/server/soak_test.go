package server

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/internal/config"
)

// TestSoak serves token exchanges at a fixed rate for MCPSTS_SOAK (e.g.
// 10m; opt-in, skipped otherwise) and compares the process's resident
// memory and goroutines after a warm-up with the end: both must stay flat.
// MCPSTS_SOAK_RATE is the rate (default 300 requests/s, about half of one
// core's peak with the load generator beside it).
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("MCPSTS_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("set MCPSTS_SOAK=10m to run the soak test")
	}
	d = min(d, time.Hour)
	rate := 300.0
	if r, err := strconv.ParseFloat(os.Getenv("MCPSTS_SOAK_RATE"), 64); err == nil && r > 0 {
		rate = r
	}
	idp := federationtest.NewIssuer(t)
	cfg := devConfig(t)
	dir := t.TempDir()
	idpCA := filepath.Join(dir, "idp.pem")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	cfg.Providers = append(cfg.Providers, config.Provider{Name: "ci", Issuer: idp.URL, Discovery: true, CAFile: idpCA})
	maps := filepath.Join(cfg.DataDir, "trustmaps")
	os.MkdirAll(maps, 0o700)
	os.WriteFile(filepath.Join(maps, "soak.yaml"), []byte("id: soak\nmatch: {provider: ci, subject_pattern: \"agent-.*\"}\ngrant: {client_id: soak, audiences: [\"https://files.example.com/mcp\"]}\n"), 0o600)
	cfg.Limits = config.Limits{}
	s, roots := runDev(t, cfg)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConnsPerHost: 8}}
	var sent, failed int
	var mu sync.Mutex
	drive := func(for_ time.Duration) {
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		end := time.Now().Add(for_)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for i := 0; time.Now().Before(end); i++ {
			<-tick.C
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				now := time.Now().Unix()
				tok := idp.Sign(map[string]any{"iss": idp.URL, "sub": fmt.Sprintf("agent-%d", i%100), "aud": s.Issuer, "iat": now, "exp": now + 300}, nil)
				resp, err := c.PostForm(s.Issuer+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
					"subject_token": {tok}, "subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {"https://files.example.com/mcp"}})
				mu.Lock()
				defer mu.Unlock()
				sent++
				if err != nil || resp.StatusCode != 200 {
					failed++
				}
				if err == nil {
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
	}
	drive(min(d/10, time.Minute)) // warm-up: caches, connections, pools
	runtime.GC()
	rss0, g0 := rss(t), runtime.NumGoroutine()
	drive(d)
	runtime.GC()
	rss1, g1 := rss(t), runtime.NumGoroutine()
	t.Logf("%s at %.0f/s: %d requests, %d failed; RSS %d KiB -> %d KiB; goroutines %d -> %d", d, rate, sent, failed, rss0, rss1, g0, g1)
	if failed > 0 {
		t.Errorf("%d requests failed", failed)
	}
	if g1 > g0+10 {
		t.Errorf("goroutines grew from %d to %d", g0, g1)
	}
	if rss1 > rss0*5/4+8<<10 {
		t.Errorf("resident memory grew from %d KiB to %d KiB", rss0, rss1)
	}
}

// rss is this process's resident set size in KiB.
func rss(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return 0
}
