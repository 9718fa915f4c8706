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
	idle, _ := serverRSS(srv.Process.Pid)
	fmt.Printf("server on https://%s, GOMAXPROCS=1, RSS %d MB idle; %d workers, %s per run, GOMAXPROCS=%d here\n\n", addr, idle>>20, workers, duration, runtime.GOMAXPROCS(0))

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
	fmt.Printf("\none run each: full/baseline, distinct tokens %.2f; repeated token %.2f; audit on/off %.2f and %.2f; p99 at half of peak %s (target < 3ms)\n",
		full.throughput/base.throughput, repeated.throughput/base.throughput, full.throughput/quiet.throughput,
		repeated.throughput/repeatedQuiet.throughput, half.p99)

	// The ratios again, two endpoints alternating in short rounds, so
	// that both see the same machine: the median of the round ratios, of
	// throughput and of the server's CPU time per request (its one core's
	// time, read from /proc: what the throughput of a server that has its
	// core to itself would be, without the load generator's share of this
	// machine and the VM's steal in it).
	alternate := func(a, b string, aDistinct, bDistinct bool) (tput, cpu float64, cpuA, cpuB time.Duration) {
		var ratios, cpuRatios []float64
		var as, bs []time.Duration
		for range *rounds {
			c0 := serverCPU(srv.Process.Pid)
			ra := load(client, "https://"+addr+a, tokens, workers, duration/5, maxRequests, 0, aDistinct)
			c1 := serverCPU(srv.Process.Pid)
			rb := load(client, "https://"+addr+b, tokens, workers, duration/5, maxRequests, 0, bDistinct)
			c2 := serverCPU(srv.Process.Pid)
			ratios = append(ratios, ra.throughput/rb.throughput)
			if ra.n > 0 && rb.n > 0 && c0 > 0 {
				perA, perB := (c1-c0)/time.Duration(ra.n), (c2-c1)/time.Duration(rb.n)
				as, bs = append(as, perA), append(bs, perB)
				cpuRatios = append(cpuRatios, float64(perB)/float64(perA))
			}
		}
		return median(ratios), median(cpuRatios), median(as), median(bs)
	}
	report := func(what, target string, a, b string, aDistinct, bDistinct bool) {
		tput, cpu, ca, cb := alternate(a, b, aDistinct, bDistinct)
		fmt.Printf("%-48s throughput %.2f; server CPU per request %s against %s: %.2f (target %s)\n",
			what, tput, ca.Round(100*time.Nanosecond), cb.Round(100*time.Nanosecond), cpu, target)
	}
	fmt.Printf("\nmedians of %d alternating rounds:\n", *rounds)
	report("full/baseline, distinct tokens:", ">= 0.93", "/token", "/baseline", true, true)
	report("full (repeated token)/baseline (distinct):", ">= 1.75", "/token", "/baseline", false, true)
	report("audit on/off, distinct tokens:", ">= 0.90", "/token", "/token-noaudit", true, true)
	report("audit on/off, repeated token:", ">= 0.90", "/token", "/token-noaudit", false, false)
	idle, peak := serverRSS(srv.Process.Pid)
	fmt.Printf("server RSS: %d MB now, %d MB at its peak (target < 55 MB)\n", idle>>20, peak>>20)

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

// serverRSS reads the resident set size of process pid now and at its
// peak (VmRSS and VmHWM of /proc/PID/status, Linux); 0 where unknown.
func serverRSS(pid int) (now, peak int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			now = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return now, peak
}
