// Command tokenload measures the token endpoint over real HTTPS on
// loopback. It starts a fake OIDC issuer, re-runs itself as a server on one
// core (GOMAXPROCS=1) serving the full endpoint (ES256 subject tokens in,
// ES256 tokens out, trust map, replay cache off) with audit on (the audit
// log and metrics; with TOKENLOAD_COLLECTOR=1 also spans, batched to an
// exporter) and off, and a baseline that only verifies the subject token
// and signs, then drives them with keep-alive connections for a bounded
// time and reports throughput and p50/p99 latency, and the audit cost as
// the median of alternating rounds (throughput and the server's CPU time
// per request):
//
//	go run ./bench/tokenload -duration 5s -workers 8
//
// TOKENLOAD_CPUPROFILE=FILE writes the server's CPU profile, its samples
// labelled by endpoint. Every loop is bounded in time and count and stops
// by itself; all traffic stays on 127.0.0.1.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpsts/mcpsts/dpop"
)

func main() {
	if os.Getenv("TOKENLOAD_ROLE") == "server" {
		runServer()
		return
	}
	duration := flag.Duration("duration", 5*time.Second, "how long each run drives load (at most 60s)")
	workers := flag.Int("workers", 8, "concurrent keep-alive connections")
	maxRequests := flag.Int("max-requests", 200_000, "upper bound of requests per run")
	rounds := flag.Int("rounds", 9, "alternating on/off rounds for the audit cost (each a fifth of -duration)")
	flag.Parse()
	if *duration > time.Minute {
		*duration = time.Minute
	}
	if err := drive(*duration, *workers, *maxRequests, rounds); err != nil {
		log.Fatal(err)
	}
}

func drive(duration time.Duration, workers, maxRequests int, rounds *int) error {
	idp := newIdP()
	defer idp.close()
	fmt.Printf("signing %d distinct ES256 subject tokens…\n", maxRequests)
	tokens := &tokenPool{all: idp.tokens(maxRequests)}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	srv := exec.Command(self)
	srv.Env = append(os.Environ(), "TOKENLOAD_ROLE=server", "GOMAXPROCS=1",
		"TOKENLOAD_IDP="+idp.url, "TOKENLOAD_IDP_CA="+idp.caFile)
	srv.Stderr = os.Stderr
	out, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { srv.Process.Signal(os.Interrupt); srv.Wait() }()
	var addr, caFile string
	sc := bufio.NewScanner(out)
	for (addr == "" || caFile == "") && sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			addr = v
		}
		if v, ok := strings.CutPrefix(sc.Text(), "CA "); ok {
			caFile = v
		}
	}
	if addr == "" {
		return fmt.Errorf("the server did not start")
	}
	go io.Copy(io.Discard, out)
	client, err := newClient(caFile, workers)
	if err != nil {
		return err
	}
	fmt.Printf("server on https://%s, GOMAXPROCS=1; %d workers, %s per run, GOMAXPROCS=%d here\n\n", addr, workers, duration, runtime.GOMAXPROCS(0))

	run := func(name, path string, distinct bool, rate float64) result {
		// Warm up: connections, key sets, caches.
		load(client, "https://"+addr+path, tokens, workers, time.Second, 2000, 0, false)
		r := load(client, "https://"+addr+path, tokens, workers, duration, maxRequests, rate, distinct)
		r.name = name
		fmt.Println(r)
		return r
	}
	base := run("baseline (verify + sign), distinct tokens", "/baseline", true, 0)
	full := run("full endpoint, distinct tokens", "/token", true, 0)
	quiet := run("full endpoint, audit off, distinct tokens", "/token-noaudit", true, 0)
	repeated := run("full endpoint, one repeated token", "/token", false, 0)
	repeatedQuiet := run("full endpoint, audit off, one repeated token", "/token-noaudit", false, 0)
	half := run("full endpoint, distinct tokens, at half its peak", "/token", true, full.throughput/2)
	fmt.Printf("\nfull/baseline, distinct tokens: %.2f (target >= 0.80)\n", full.throughput/base.throughput)
	fmt.Printf("full/baseline, repeated token:  %.2f (target >= 1.30)\n", repeated.throughput/base.throughput)
	fmt.Printf("p99 at half of peak:            %s (target < 5ms)\n", half.p99)
	fmt.Printf("audit on/off, one run each:     distinct tokens %.2f, repeated token %.2f (runs in sequence: see the alternating rounds)\n",
		full.throughput/quiet.throughput, repeated.throughput/repeatedQuiet.throughput)

	// The audit cost again, the two endpoints alternating in short rounds,
	// so that both see the same machine: the median of the round ratios,
	// of throughput and of the server's CPU time per request (its one
	// core's time, read from /proc: what the throughput of a server that
	// has its core to itself would be, without the load generator's share
	// of this machine and the VM's steal in it).
	interleaved := func(distinct bool) (tput, cpu float64, cpuOn, cpuOff time.Duration) {
		var ratios, cpuRatios []float64
		var ons, offs []time.Duration
		for range *rounds {
			c0 := serverCPU(srv.Process.Pid)
			on := load(client, "https://"+addr+"/token", tokens, workers, duration/5, maxRequests, 0, distinct)
			c1 := serverCPU(srv.Process.Pid)
			off := load(client, "https://"+addr+"/token-noaudit", tokens, workers, duration/5, maxRequests, 0, distinct)
			c2 := serverCPU(srv.Process.Pid)
			ratios = append(ratios, on.throughput/off.throughput)
			if on.n > 0 && off.n > 0 && c0 > 0 {
				perOn, perOff := (c1-c0)/time.Duration(on.n), (c2-c1)/time.Duration(off.n)
				ons, offs = append(ons, perOn), append(offs, perOff)
				cpuRatios = append(cpuRatios, float64(perOff)/float64(perOn))
			}
		}
		return median(ratios), median(cpuRatios), median(ons), median(offs)
	}
	for _, c := range []struct {
		name     string
		distinct bool
	}{{"distinct tokens", true}, {"repeated token", false}} {
		tput, cpu, on, off := interleaved(c.distinct)
		fmt.Printf("audit on/off, %s, median of %d alternating rounds: throughput %.2f; server CPU per request %s on, %s off: %.2f (target >= 0.90)\n",
			c.name, *rounds, tput, on.Round(100*time.Nanosecond), off.Round(100*time.Nanosecond), cpu)
	}
	// DPoP: the full endpoint with and without a proof, alternating.
	key, _ := dpop.GenerateKey()
	signer, _ := dpop.NewSigner(key, nil)
	var ratios, cpuRatios []float64
	var ons, offs []time.Duration
	for range *rounds {
		c0 := serverCPU(srv.Process.Pid)
		on := loadWith(client, "https://"+addr+"/token-dpop", tokens, workers, duration/5, maxRequests, 0, true, signer)
		c1 := serverCPU(srv.Process.Pid)
		off := load(client, "https://"+addr+"/token", tokens, workers, duration/5, maxRequests, 0, true)
		c2 := serverCPU(srv.Process.Pid)
		if on.errs > 0 {
			return fmt.Errorf("DPoP run: %d errors", on.errs)
		}
		ratios = append(ratios, on.throughput/off.throughput)
		if on.n > 0 && off.n > 0 && c0 > 0 {
			perOn, perOff := (c1-c0)/time.Duration(on.n), (c2-c1)/time.Duration(off.n)
			ons, offs = append(ons, perOn), append(offs, perOff)
			cpuRatios = append(cpuRatios, float64(perOff)/float64(perOn))
		}
	}
	fmt.Printf("DPoP/bearer, distinct tokens, median of %d alternating rounds: throughput %.2f; server CPU per request %s with DPoP, %s without: %.2f (target >= 0.75)\n",
		*rounds, median(ratios), median(ons).Round(100*time.Nanosecond), median(offs).Round(100*time.Nanosecond), median(cpuRatios))
	return nil
}

func median[T int64 | float64 | time.Duration](v []T) T {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// serverCPU is the CPU time the process pid has used so far, the sum of
// its threads' (Linux: /proc/PID/task/*/schedstat, in nanoseconds); 0 where
// that cannot be read.
func serverCPU(pid int) time.Duration {
	dirs, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var total time.Duration
	for _, d := range dirs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, d.Name()))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			total += time.Duration(ns)
		}
	}
	return total
}

// tokenPool hands out subject tokens: with distinct load, each one once
// across all runs (until all were used), so that no run finds a token that
// an earlier run left in the server's verified-token cache.
type tokenPool struct {
	all    []string
	cursor atomic.Int64
}

func (p *tokenPool) next() string {
	return p.all[int(p.cursor.Add(1)-1)%len(p.all)]
}

type result struct {
	name          string
	n, errs       int
	throughput    float64
	p50, p99, max time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("%-50s %7.0f req/s  p50 %-10s p99 %-10s (%d requests, %d errors)", r.name, r.throughput,
		r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.n, r.errs)
}

// load sends token exchanges from workers for at most d and at most max
// requests, paced at rate per second when rate > 0.
func load(c *http.Client, target string, tokens *tokenPool, workers int, d time.Duration, max int, rate float64, distinct bool) result {
	return loadWith(c, target, tokens, workers, d, max, rate, distinct, nil)
}

// loadWith is load with a DPoP proof from signer on every request (nil:
// none).
func loadWith(c *http.Client, target string, tokens *tokenPool, workers int, d time.Duration, max int, rate float64, distinct bool, signer *dpop.Signer) result {
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var errs atomic.Int64
	deadline := time.Now().Add(d)
	start := time.Now()
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) / rate)
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1024)
			for {
				i := next.Add(1) - 1
				if int(i) >= max || time.Now().After(deadline) {
					break
				}
				if interval > 0 {
					if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
						time.Sleep(wait)
					}
				}
				tok := tokens.all[0]
				if distinct {
					tok = tokens.next()
				}
				req, _ := http.NewRequest(http.MethodPost, target, strings.NewReader(url.Values{
					"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {tok},
					"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {"https://mcp.example.com/mcp"},
				}.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if signer != nil {
					proof, _ := signer.Proof(http.MethodPost, DPoPTokenURL, "", "")
					req.Header.Set("DPoP", proof)
				}
				t0 := time.Now()
				resp, err := c.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					errs.Add(1)
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	r := result{n: len(lat), errs: int(errs.Load()), throughput: float64(len(lat)) / elapsed.Seconds()}
	if len(lat) > 0 {
		r.p50, r.p99, r.max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	return r
}

func newClient(caFile string, workers int) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: roots},
			MaxIdleConnsPerHost: workers,
			MaxConnsPerHost:     workers,
		},
	}, nil
}
