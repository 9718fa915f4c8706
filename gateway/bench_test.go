package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkGatewayLatency measures what the gateway adds to a request with
// a cached token: the peak rate through it first (8 connections, 1 s),
// then requests paced at half of that, alternately through the gateway
// and straight to the upstream, one at a time per connection; it reports
// the p50 and p99 of both and their difference. Run it on one core:
//
//	GOMAXPROCS=1 go test ./gateway -run XXX -bench GatewayLatency -benchtime 1x
func BenchmarkGatewayLatency(b *testing.B) {
	body := `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}))
	defer up.Close()
	gw, broker, _ := serveGateway(b, up.URL+"/mcp", nil, nil)
	tok, _ := broker.Token(gw.URL+"/mcp", "agent", "ci/agent")
	through := gw.Client()
	through.Transport.(*http.Transport).MaxIdleConnsPerHost = 16
	direct := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	send := func(c *http.Client, url string, auth bool) time.Duration {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if auth {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return time.Since(start)
	}
	for b.Loop() {
		// Peak through the gateway.
		var n atomic.Int64
		var wg sync.WaitGroup
		deadline := time.Now().Add(time.Second)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					send(through, gw.URL+"/mcp", true)
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		peak := float64(n.Load())
		// Half of it, paced, alternating.
		interval := time.Duration(float64(time.Second) / (peak / 2))
		var viaGW, viaUp []time.Duration
		tick := time.NewTicker(interval)
		end := time.Now().Add(2 * time.Second)
		for i := 0; time.Now().Before(end) && i < 20000; i++ {
			<-tick.C
			if i%2 == 0 {
				viaGW = append(viaGW, send(through, gw.URL+"/mcp", true))
			} else {
				viaUp = append(viaUp, send(direct, up.URL+"/mcp", false))
			}
		}
		tick.Stop()
		p := func(d []time.Duration, q float64) time.Duration {
			slices.Sort(d)
			return d[int(q*float64(len(d)-1))]
		}
		b.ReportMetric(peak, "peak-req/s")
		b.ReportMetric(float64(p(viaGW, 0.5).Microseconds()), "gw-p50-µs")
		b.ReportMetric(float64(p(viaGW, 0.99).Microseconds()), "gw-p99-µs")
		b.ReportMetric(float64(p(viaUp, 0.5).Microseconds()), "up-p50-µs")
		b.ReportMetric(float64(p(viaUp, 0.99).Microseconds()), "up-p99-µs")
		b.ReportMetric(float64((p(viaGW, 0.5) - p(viaUp, 0.5)).Microseconds()), "added-p50-µs")
		b.ReportMetric(float64((p(viaGW, 0.99) - p(viaUp, 0.99)).Microseconds()), "added-p99-µs")
	}
}
