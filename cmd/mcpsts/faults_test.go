package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/exchange/client"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/internal/devpki"
	broker "github.com/mcpsts/mcpsts/internal/server"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/resource"
	"golang.org/x/sys/unix"
)

// cutProxy forwards TCP to target until it is cut: then it refuses
// connections and drops those open, as an unreachable database does.
type cutProxy struct {
	target, addr string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	p := &cutProxy{target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *cutProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln {
				// cut while this connection was being accepted: it must
				// not outlive the cut (a pool would keep using it).
				p.mu.Unlock()
				c.Close()
				b.Close()
				return
			}
			p.conns[c], p.conns[b] = true, true
			p.mu.Unlock()
			go func() { io.Copy(b, c); b.Close() }()
			go func() { io.Copy(c, b); c.Close() }()
		}
	}()
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *cutProxy) restore(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("restore the proxy on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// TestStoreUnreachableUnderLoad: PostgreSQL becomes unreachable while
// workers send token requests that need it (single-use subject tokens,
// claimed in the store): every request answered in that time is 503
// temporarily_unavailable with Retry-After, promptly, never a token and
// never a 500; /readyz says so; when the database is back the same process
// issues tokens again without a restart. MCPSTS_FAULT_OUTAGE sets the
// outage (default 3s; 30s is the long run).
func TestStoreUnreachableUnderLoad(t *testing.T) {
	f := newReplicaFixture(t)
	outage := 3 * time.Second
	if d, err := time.ParseDuration(os.Getenv("MCPSTS_FAULT_OUTAGE")); err == nil {
		outage = d
	}
	u, _ := url.Parse(f.pg)
	proxy := newCutProxy(t, u.Host)
	u.Host = proxy.addr
	idp, idpCA, kek := f.idp, f.idpCA, f.kek
	broker, ca := serveBrokerEnv(t, testEnv(nil), `id: agent
match: {provider: ci, subject_pattern: "agent.*"}
grant: {client_id: agent, audiences: ["https://files.example.com/mcp"]}
`, fmt.Sprintf(`store: %s
keys: {kek_file: %s}
limits: {store: memory, per_identity: {rate: 0}, per_client: {rate: 0}, per_source: {rate: 0}}
providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s, single_use: true}`, u.String(), kek, idp.URL, idpCA))
	c := clientTrusting(t, ca)
	c.Timeout = 15 * time.Second

	type outcome struct {
		start, end time.Time
		status     int
		code       string
		retryAfter string
	}
	var mu sync.Mutex
	var outcomes []outcome
	var stop atomic.Bool
	var wg sync.WaitGroup
	var n atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000 && !stop.Load(); i++ {
				now := time.Now().Unix()
				tok := idp.Sign(map[string]any{"iss": idp.URL, "sub": fmt.Sprintf("agent-%d", w), "aud": broker, "iat": now, "exp": now + 300,
					"jti": fmt.Sprintf("%d-%d-%d", w, i, n.Add(1))}, nil)
				o := outcome{start: time.Now()}
				resp, err := c.PostForm(broker+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
					"subject_token": {tok}, "subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {"https://files.example.com/mcp"}})
				o.end = time.Now()
				if err != nil {
					t.Errorf("request: %v", err)
					return
				}
				var body map[string]any
				json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				o.status, o.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
				o.code, _ = body["error"].(string)
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	ready := func() int {
		resp, err := c.Get(broker + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	time.Sleep(time.Second)
	cutAt := time.Now()
	proxy.cut()
	time.Sleep(outage / 2)
	if got := ready(); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the outage: %d", got)
	}
	time.Sleep(outage / 2)
	restoredAt := time.Now()
	proxy.restore(t)
	deadline := time.Now().Add(30 * time.Second)
	for ready() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not recover within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	recovered := time.Now()
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()

	var during, after, slowest time.Duration
	var okAfter int
	for _, o := range outcomes {
		if o.status >= 500 && o.status != http.StatusServiceUnavailable {
			t.Errorf("a %d answer", o.status)
		}
		if d := o.end.Sub(o.start); d > slowest {
			slowest = d
		}
		switch {
		case o.start.After(cutAt.Add(100*time.Millisecond)) && o.end.Before(restoredAt):
			during++
			if o.status != http.StatusServiceUnavailable || o.code != "temporarily_unavailable" || o.retryAfter == "" {
				t.Errorf("during the outage: %d %q Retry-After %q", o.status, o.code, o.retryAfter)
			}
		case o.start.After(recovered):
			after++
			if o.status == 200 {
				okAfter++
			}
		}
	}
	if during == 0 || after == 0 || okAfter == 0 {
		t.Fatalf("requests during the outage %d, after recovery %d (%d tokens)", during, after, okAfter)
	}
	t.Logf("%d requests; %d during the %s outage, all 503; slowest answer %s; recovered %s after the database came back; %d of %d after it issued tokens",
		len(outcomes), during, outage, slowest.Round(time.Millisecond), recovered.Sub(restoredAt).Round(time.Millisecond), okAfter, after)
	if slowest > 10*time.Second {
		t.Errorf("an answer took %s: requests must fail fast", slowest)
	}
}

// TestIssuerOutageAndRotationUnderLoad: the workloads' issuer (discovery
// and JWKS) goes down under load: tokens keep being issued from the cached
// key set (within its stale bound); it comes back having rotated its key:
// tokens signed with the new key are accepted once the set is fetched
// again (the unknown kid triggers it), without a restart.
func TestIssuerOutageAndRotationUnderLoad(t *testing.T) {
	idp := federationtest.NewIssuer(t)
	idp.SetMaxAge(1) // refresh every second: the outage is seen at once
	idpCA := filepath.Join(t.TempDir(), "idp.pem")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	broker, ca := serveBroker(t, `id: agent
match: {provider: ci, subject: agent}
grant: {client_id: agent, audiences: ["https://files.example.com/mcp"]}
`, fmt.Sprintf(`limits: {per_identity: {rate: 0}, per_client: {rate: 0}, per_source: {rate: 0}}
providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s, refresh: {min: 1s, unknown_kid_interval: 1s}}`, idp.URL, idpCA))
	c := clientTrusting(t, ca)
	var seq atomic.Int64
	request := func() (int, string) {
		now := time.Now().Unix()
		tok := idp.Sign(map[string]any{"iss": idp.URL, "sub": "agent", "aud": broker, "iat": now, "exp": now + 300, "jti": fmt.Sprint(seq.Add(1))}, nil)
		resp, err := c.PostForm(broker+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"subject_token": {tok}, "subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {"https://files.example.com/mcp"}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		code, _ := body["error"].(string)
		return resp.StatusCode, code
	}
	var codesMu sync.Mutex
	codes := map[string]int{}
	load := func(d time.Duration) (ok, refused int) {
		var okN, refusedN atomic.Int64
		var wg sync.WaitGroup
		deadline := time.Now().Add(d)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
					if status, code := request(); status == 200 {
						okN.Add(1)
					} else {
						refusedN.Add(1)
						codesMu.Lock()
						codes[fmt.Sprint(status, " ", code)]++
						codesMu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		return int(okN.Load()), int(refusedN.Load())
	}
	if ok, refused := load(time.Second); ok == 0 || refused != 0 {
		t.Fatalf("before the outage: %d issued, %d refused %v", ok, refused, codes)
	}
	idp.SetDown(true)
	ok, refused := load(3 * time.Second)
	if ok == 0 || refused != 0 || idp.Requests("refused") == 0 {
		t.Fatalf("during the outage (cached keys, within the stale bound): %d issued, %d refused, %d fetches refused", ok, refused, idp.Requests("refused"))
	}
	// Back, with a new key that signs from now on.
	idp.AddKey("ES256")
	idp.DropOldKeys()
	idp.SetDown(false)
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, code := request()
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotated key was not picked up in 15s: %d %s", status, code)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ok, refused := load(time.Second); ok == 0 || refused != 0 {
		t.Fatalf("after the rotation: %d issued, %d refused", ok, refused)
	}
	t.Logf("during a 3s issuer outage %d tokens were issued from the cached key set; the rotated key was picked up after it came back", ok)
}

// TestBinarySIGTERMUnderLoad: the mcpsts binary receives SIGTERM while four
// workers exchange tokens: it exits within the bound, every request it
// answered was answered whole, every token it issued is a line of the audit
// log, and the log verifies.
func TestBinarySIGTERMUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	data := filepath.Join(t.TempDir(), "data")
	cmd, addr, stderr := startBinaryDev(t, data)
	base := "https://" + addr
	key, err := devpki.LoadIdentityKey(data)
	if err != nil {
		t.Fatal(err)
	}
	src := client.DevSource{Key: key, KeyID: devpki.IdentityKeyID(key), Issuer: config.DevIssuer, Subject: broker.DevSubject}
	c := clientTrusting(t, filepath.Join(data, "ca.pem"))
	var issued, answered, failed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ev, err := src.Evidence(context.Background(), base)
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := c.PostForm(base+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
					"subject_token": {ev.Token}, "subject_token_type": {ev.TokenType}, "resource": {broker.DevDemoAudience}})
				if err != nil {
					failed.Add(1) // the server has stopped accepting: expected after SIGTERM
					continue
				}
				var body map[string]any
				if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
					t.Errorf("a response cut short: %v", err)
				}
				resp.Body.Close()
				answered.Add(1)
				if resp.StatusCode == 200 && body["access_token"] != nil {
					issued.Add(1)
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	sent := time.Now()
	terminate(t, cmd, stderr)
	exited := time.Since(sent)
	close(stop)
	wg.Wait()
	log, err := os.ReadFile(filepath.Join(data, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	allow := int64(strings.Count(string(log), `"event":"token.allow"`))
	if allow != issued.Load() || issued.Load() == 0 {
		t.Fatalf("%d tokens issued, %d token.allow lines in the audit log", issued.Load(), allow)
	}
	if out, _, err := run(t, testEnv(nil), "audit", "verify", filepath.Join(data, "audit.log")); err != nil || !strings.Contains(out, "chain intact") {
		t.Fatalf("audit verify: %q %v", out, err)
	}
	t.Logf("SIGTERM under load: exited in %s; %d answered (%d tokens, each in the audit log, which verifies), %d refused at connect after", exited.Round(time.Millisecond), answered.Load(), issued.Load(), failed.Load())
}

// TestKeyRotationUnderLoadWithTwoReplicas: two replicas on one PostgreSQL
// behind a round-robin proxy issue tokens under load while a resource server
// verifies every one; a key is rotated (mcpsts keys rotate), published at
// once and signing an hour later (the replicas' clocks jump past the
// publication lead): no token fails verification at the resource server,
// before, during or after, and both replicas end up signing with the new
// key.
func TestKeyRotationUnderLoadWithTwoReplicas(t *testing.T) {
	f := newReplicaFixture(t)
	const files = "https://files.example.com/mcp"
	os.WriteFile(filepath.Join(f.maps, "m.yaml"), []byte(`id: agent
match: {provider: ci, subject_pattern: "agent-.*"}
grant: {client_id: agent, audiences: ["`+files+`"]}
`), 0o600)
	// Every party's clock, jumped forward together.
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	cert, key, ca := productionFiles(t)
	var addrs []string
	var lns []net.Listener
	for range 2 {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		lns, addrs = append(lns, ln), append(addrs, ln.Addr().String())
	}
	lb := "https://" + roundRobin(t, addrs...)
	var file string
	for _, ln := range lns {
		e := testEnv(nil)
		e.now, e.listener = clock, handOver(ln.Addr().String(), ln)
		file = writeConfig(t, fmt.Sprintf(`
issuer: %s
listen: %s
store: %s
data_dir: %s
tls: {cert_file: %s, key_file: %s}
keys: {kek_file: %s, refresh_interval: 1s}
trust_maps: {paths: [%s]}
limits: {per_identity: {rate: 0}, per_client: {rate: 0}, per_source: {rate: 0}}
providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}
`, lb, ln.Addr(), f.pg, t.TempDir(), cert, key, f.kek, f.maps, f.idp.URL, f.idpCA))
		startServe(t, e, "--config", file)
	}
	c := clientTrusting(t, ca)
	rs, err := resource.New(resource.Config{Resource: files, Issuer: lb, Transport: c.Transport, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rs.Run(ctx)
	for deadline := time.Now().Add(10 * time.Second); rs.Ready() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the resource server never loaded the broker's keys: %v", rs.Ready())
		}
	}
	protected := rs.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))

	type result struct {
		at             time.Time
		kid, why       string
		status, verify int
	}
	var mu sync.Mutex
	var results []result
	var stop atomic.Bool
	var wg sync.WaitGroup
	var seq atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				now := clock().Unix()
				// An hour's lifetime: a token signed just before a step of
				// the clock is still valid after it.
				tok := f.idp.Sign(map[string]any{"iss": f.idp.URL, "sub": fmt.Sprintf("agent-%d", w), "aud": lb, "iat": now, "exp": now + 3600, "jti": fmt.Sprint(seq.Add(1))}, nil)
				resp, err := c.PostForm(lb+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
					"subject_token": {tok}, "subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {files}})
				if err != nil {
					t.Errorf("request: %v", err)
					return
				}
				var body map[string]any
				json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				r := result{at: time.Now(), status: resp.StatusCode}
				r.why, _ = body["error_description"].(string)
				if access, ok := body["access_token"].(string); ok {
					header, _ := base64.RawURLEncoding.DecodeString(strings.Split(access, ".")[0])
					var h struct{ Kid string }
					json.Unmarshal(header, &h)
					r.kid = h.Kid
					req := httptest.NewRequest(http.MethodPost, files, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
					req.Header.Set("Authorization", "Bearer "+access)
					req.Header.Set("Content-Type", "application/json")
					rec := httptest.NewRecorder()
					protected.ServeHTTP(rec, req)
					r.verify = rec.Code
					r.why = rec.Header().Get("WWW-Authenticate")
				}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)
	out, _, err := run(t, testEnv(nil), "keys", "rotate", "--config", file)
	if err != nil || !strings.Contains(out, "added key") {
		t.Fatalf("keys rotate: %q %v", out, err)
	}
	time.Sleep(2 * time.Second) // both replicas load the published key (refresh 1s)
	// Time passes: 70 minutes in steps of 14, each step shorter than every
	// bound on a key set's age (the issuer signs from a set at most 30
	// minutes old) and followed by a refresh interval, as real time would
	// be. The new key signs from the 5th step.
	jumped := time.Now()
	for range 5 {
		offset.Add(int64(14 * time.Minute))
		time.Sleep(1200 * time.Millisecond)
	}
	if time.Duration(offset.Load()) <= issuer.PublishLead {
		t.Fatal("the clock did not pass the publication lead")
	}
	activated := time.Now()
	time.Sleep(2 * time.Second)
	stop.Store(true)
	wg.Wait()

	kids := map[string]int{}
	var failures int
	for _, r := range results {
		if r.status != 200 || r.verify != 200 {
			failures++
			if failures <= 5 || failures%200 == 0 {
				t.Errorf("at %s from the jump: token %d, verification %d (kid %s): %s", r.at.Sub(jumped).Round(time.Millisecond), r.status, r.verify, r.kid, r.why)
			}
		}
		kids[r.kid]++
	}
	if failures > 0 {
		t.Fatalf("%d of %d requests failed", failures, len(results))
	}
	if len(kids) != 2 {
		t.Fatalf("tokens by key %v: want the old key's and the new key's", kids)
	}
	// From a refresh interval after the jump, only the new key signs, at
	// both replicas.
	var newKid string
	for _, r := range results {
		if r.at.After(activated.Add(1500 * time.Millisecond)) {
			if newKid == "" {
				newKid = r.kid
			} else if r.kid != newKid {
				t.Fatalf("after the activation, tokens signed by %s and %s", newKid, r.kid)
			}
		}
	}
	t.Logf("%d tokens issued by two replicas and verified by a resource server across a key rotation, by key %v: no failure", len(results), kids)
}

// TestAuditDiskFullUnderLoad: the file holding the audit log fills (a
// file-size limit on the serve process, RLIMIT_FSIZE: writes past it fail
// with EFBIG as on a full disk) under load: the broker fails closed (every
// grant is 503 temporarily_unavailable with Retry-After, never a token
// without its audit line, never a 500), and serves again by itself when
// space returns; every token issued has its line, and the chain verifies.
func TestAuditDiskFullUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	data, maps, auditFile := filepath.Join(dir, "data"), filepath.Join(dir, "maps"), filepath.Join(dir, "audit.log")
	os.Mkdir(maps, 0o700)
	os.WriteFile(filepath.Join(maps, "m.yaml"), []byte(`id: agent
match: {provider: ci, subject: agent}
grant: {client_id: agent, audiences: ["https://files.example.com/mcp"]}
`), 0o600)
	idp := federationtest.NewIssuer(t)
	idpCA := filepath.Join(dir, "idp.pem")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	kekText, _ := issuer.GenerateKEK()
	kek := filepath.Join(dir, "kek")
	os.WriteFile(kek, []byte(kekText), 0o600)
	cert, key, ca := productionFiles(t)
	const sts = "https://sts.example.com"
	cmd, addr, stderr := startBinary(t, nil, "serve", "--config", writeConfig(t, fmt.Sprintf(`issuer: %s
listen: 127.0.0.1:0
data_dir: %s
tls: {cert_file: %s, key_file: %s}
keys: {kek_file: %s}
trust_maps: {paths: [%s]}
audit: {file: %s}
limits: {per_identity: {rate: 0}, per_client: {rate: 0}, per_source: {rate: 0}}
providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}
`, sts, data, cert, key, kek, maps, auditFile, idp.URL, idpCA)))
	base := "https://" + addr
	c := clientTrusting(t, ca)
	type outcome struct {
		at           time.Time
		status       int
		code, retry  string
		accessIssued bool
	}
	var mu sync.Mutex
	var outcomes []outcome
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50000 && !stop.Load(); i++ {
				now := time.Now().Unix()
				tok := idp.Sign(map[string]any{"iss": idp.URL, "sub": "agent", "aud": sts, "iat": now, "exp": now + 300}, nil)
				resp, err := c.PostForm(base+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
					"subject_token": {tok}, "subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {"https://files.example.com/mcp"}})
				if err != nil {
					t.Errorf("request: %v", err)
					return
				}
				var body map[string]any
				json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				o := outcome{at: time.Now(), status: resp.StatusCode, retry: resp.Header.Get("Retry-After"), accessIssued: body["access_token"] != nil}
				o.code, _ = body["error"].(string)
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	snapshot := func() []outcome {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(outcomes)
	}
	waitFor := func(what string, ok func(outcome) bool, after time.Time) time.Time {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			for _, o := range snapshot() {
				if o.at.After(after) && ok(o) {
					return o.at
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15s", what)
			}
		}
	}
	time.Sleep(time.Second)
	// The disk fills: no file of the process may grow past 64 KiB beyond
	// the largest it holds now (the audit log grows; the SQLite store does
	// not while tokens are issued).
	var largest int64
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
			largest = max(largest, fi.Size())
		}
		return nil
	})
	full := time.Now()
	limit := unix.Rlimit{Cur: uint64(largest) + 64<<10, Max: unix.RLIM_INFINITY}
	if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_FSIZE, &limit, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	failing := waitFor("the broker never failed closed", func(o outcome) bool { return o.status == http.StatusServiceUnavailable }, full)
	time.Sleep(time.Second)
	freed := time.Now()
	limit.Cur = unix.RLIM_INFINITY
	if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_FSIZE, &limit, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	recovered := waitFor("the broker never served again", func(o outcome) bool { return o.status == 200 }, freed)
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	terminate(t, cmd, stderr)

	var issued, refused, during int
	for _, o := range outcomes {
		switch {
		case o.status == 200 && o.accessIssued:
			issued++
		case o.status == http.StatusServiceUnavailable:
			refused++
			if o.code != "temporarily_unavailable" || o.retry == "" {
				t.Errorf("a 503 with %q, Retry-After %q", o.code, o.retry)
			}
		default:
			t.Errorf("an answer %d %q", o.status, o.code)
		}
		// Once failing is seen and until space returns, nothing is granted
		// (allowing for answers already on their way back).
		if o.at.After(failing.Add(100*time.Millisecond)) && o.at.Before(freed) {
			during++
			if o.status != http.StatusServiceUnavailable {
				t.Errorf("a %d answer while the audit log could not be written", o.status)
			}
		}
	}
	log, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	if allow := strings.Count(string(log), `"event":"token.allow"`); allow != issued {
		t.Fatalf("%d tokens issued, %d token.allow lines in the audit log", issued, allow)
	}
	if out, _, err := run(t, testEnv(nil), "audit", "verify", auditFile); err != nil || !strings.Contains(out, "chain intact") {
		t.Fatalf("audit verify: %q %v", out, err)
	}
	if during == 0 {
		t.Fatal("no request was answered while the disk was full")
	}
	t.Logf("disk full under load: failing closed %s after the limit, %d grants refused (503, Retry-After), serving again %s after space returned; %d tokens, each with its audit line; the chain verifies",
		failing.Sub(full).Round(time.Millisecond), refused, recovered.Sub(freed).Round(time.Millisecond), issued)
}

// privatePostgres runs a PostgreSQL server of its own for a test that
// restarts it (the shared one serves other tests), listening on a Unix
// socket in a private directory only: no port to collide. It returns the
// store URL and a function that restarts the server (pg_ctl restart -m fast:
// every session is terminated, as in a real restart).
func privatePostgres(t *testing.T) (storeURL string, restart func()) {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(bins) == 0 || os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("no PostgreSQL binaries, or not root (the server runs as user postgres) under CI")
		}
		t.Skip("needs PostgreSQL's binaries and root")
	}
	bin := filepath.Dir(bins[len(bins)-1])
	// A directory the postgres user owns, outside the test's private
	// temporary directory.
	dir, err := os.MkdirTemp("", "mcpsts-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pgdata := filepath.Join(dir, "data")
	as := func(args ...string) {
		t.Helper()
		out, err := exec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	as(filepath.Join(bin, "initdb"), "-D", pgdata, "-A", "trust", "-U", "postgres", "--no-sync")
	opts := fmt.Sprintf("-c listen_addresses='' -c unix_socket_directories=%s -c fsync=off", dir)
	ctl := func(args ...string) {
		as(append([]string{filepath.Join(bin, "pg_ctl"), "-D", pgdata, "-l", filepath.Join(dir, "log"), "-o", opts, "-w"}, args...)...)
	}
	ctl("start")
	t.Cleanup(func() { ctl("stop", "-m", "immediate") })
	return fmt.Sprintf("postgres://postgres@/postgres?host=%s&sslmode=disable", dir), func() { ctl("restart", "-m", "fast") }
}

// TestStoreRestartUnderLoad: PostgreSQL restarts under load (every session
// terminated): requests that need it meanwhile fail fast with 503
// temporarily_unavailable and Retry-After, never a 500; the process issues
// tokens again by itself; nothing committed is lost (the signing key is
// the same, a single-use token claimed before the restart stays claimed).
func TestStoreRestartUnderLoad(t *testing.T) {
	pg, restart := privatePostgres(t)
	idp := federationtest.NewIssuer(t)
	dir := t.TempDir()
	idpCA, kek := filepath.Join(dir, "idp.pem"), filepath.Join(dir, "kek")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	kekText, _ := issuer.GenerateKEK()
	os.WriteFile(kek, []byte(kekText), 0o600)
	broker, ca := serveBroker(t, `id: agent
match: {provider: ci, subject_pattern: "agent.*"}
grant: {client_id: agent, audiences: ["https://files.example.com/mcp"]}
`, fmt.Sprintf(`store: %s
keys: {kek_file: %s}
limits: {store: memory, per_identity: {rate: 0}, per_client: {rate: 0}, per_source: {rate: 0}}
providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s, single_use: true}`, pg, kek, idp.URL, idpCA))
	c := clientTrusting(t, ca)
	var seq atomic.Int64
	sign := func() string {
		now := time.Now().Unix()
		return idp.Sign(map[string]any{"iss": idp.URL, "sub": "agent", "aud": broker, "iat": now, "exp": now + 300, "jti": fmt.Sprint(seq.Add(1))}, nil)
	}
	exchange := func(tok string) (status int, code, retry, kid string, d time.Duration) {
		start := time.Now()
		resp, err := c.PostForm(broker+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"subject_token": {tok}, "subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {"https://files.example.com/mcp"}})
		if err != nil {
			t.Errorf("request: %v", err)
			return 0, "", "", "", 0
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		code, _ = body["error"].(string)
		if access, ok := body["access_token"].(string); ok {
			header, _ := base64.RawURLEncoding.DecodeString(strings.Split(access, ".")[0])
			var h struct{ Kid string }
			json.Unmarshal(header, &h)
			kid = h.Kid
		}
		return resp.StatusCode, code, resp.Header.Get("Retry-After"), kid, time.Since(start)
	}
	claimed := sign()
	status, _, _, kidBefore, _ := exchange(claimed)
	if status != 200 {
		t.Fatalf("before the restart: %d", status)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var ok, unavailable, other atomic.Int64
	var slowest atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50000 && !stop.Load(); i++ {
				status, code, retry, _, d := exchange(sign())
				if int64(d) > slowest.Load() {
					slowest.Store(int64(d))
				}
				switch {
				case status == 200:
					ok.Add(1)
				case status == 503 && code == "temporarily_unavailable" && retry != "":
					unavailable.Add(1)
				default:
					other.Add(1)
					t.Errorf("during the restart: %d %q Retry-After %q", status, code, retry)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	restarted := time.Now()
	restart()
	took := time.Since(restarted)
	// Recovered by itself: tokens again within 10s.
	okAtRestart := ok.Load()
	for deadline := time.Now().Add(10 * time.Second); ok.Load() < okAtRestart+20; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no tokens within 10s of the restart")
		}
	}
	stop.Store(true)
	wg.Wait()
	status, code, _, _, _ := exchange(claimed)
	if status != 400 || code != "invalid_request" {
		t.Errorf("a single-use token claimed before the restart, again after it: %d %q", status, code)
	}
	if status, _, _, kid, _ := exchange(sign()); status != 200 || kid != kidBefore {
		t.Errorf("after the restart: %d, signed by %q (before: %q)", status, kid, kidBefore)
	}
	t.Logf("PostgreSQL restarted under load in %s: %d tokens, %d answered 503 with Retry-After, %d other; slowest answer %s",
		took.Round(time.Millisecond), ok.Load(), unavailable.Load(), other.Load(), time.Duration(slowest.Load()).Round(time.Millisecond))
	if time.Duration(slowest.Load()) > 10*time.Second {
		t.Errorf("an answer took %s: requests must fail fast", time.Duration(slowest.Load()))
	}
}
