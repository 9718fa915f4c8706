package main

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/internal/devpki"
	"github.com/mcpsts/mcpsts/internal/store/storetest"
	"github.com/mcpsts/mcpsts/issuer"
)

// replicaFixture is what the process-level tests on PostgreSQL share: a
// fresh database, a trusted workload issuer and its CA file, a KEK file, and
// an empty trust-map directory. It skips without MCPSTS_TEST_POSTGRES, and
// fails under CI.
type replicaFixture struct {
	pg, idpCA, kek, maps string
	idp                  *federationtest.Issuer
}

func newReplicaFixture(t *testing.T) replicaFixture {
	t.Helper()
	admin := os.Getenv("MCPSTS_TEST_POSTGRES")
	if admin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("MCPSTS_TEST_POSTGRES is not set under CI")
		}
		t.Skip("MCPSTS_TEST_POSTGRES not set: no PostgreSQL for this test")
	}
	f := replicaFixture{pg: storetest.NewPostgresDatabase(t, admin), idp: federationtest.NewIssuer(t)}
	dir := t.TempDir()
	f.idpCA = filepath.Join(dir, "idp.pem")
	os.WriteFile(f.idpCA, f.idp.CAPEM(), 0o600)
	kekText, _ := issuer.GenerateKEK()
	f.kek = filepath.Join(dir, "kek")
	os.WriteFile(f.kek, []byte(kekText), 0o600)
	f.maps = filepath.Join(dir, "maps")
	os.Mkdir(f.maps, 0o700)
	return f
}

// TestReplicasOnPostgres: two mcpsts serve processes on one PostgreSQL
// database, one issuer: a revocation at one is refused by the other's
// introspection, a single-use token used at one is inactive at the other,
// a DPoP nonce of one is valid at the other, a DPoP proof used at one
// is refused by the other, and a per-identity rate limit holds across both.
func TestReplicasOnPostgres(t *testing.T) {
	f := newReplicaFixture(t)
	pg, idp, idpCA, kek, maps := f.pg, f.idp, f.idpCA, f.kek, f.maps
	const files, ledger = "https://files.example.com/mcp", "https://ledger.example.com/mcp"
	lnA, _ := net.Listen("tcp", "127.0.0.1:0")
	lnB, _ := net.Listen("tcp", "127.0.0.1:0")
	issuerURL := "https://" + lnA.Addr().String()
	os.WriteFile(filepath.Join(maps, "m.yaml"), []byte(`id: agent
match: {provider: ci, subject: agent}
grant: {client_id: agent, audiences: ["`+files+`"], scopes: [files:read]}
---
id: limited
match: {provider: ci, subject: limited}
grant: {client_id: limited, audiences: ["`+files+`"]}
---
id: once
match: {provider: ci, subject: once}
grant: {client_id: once, audiences: ["`+files+`"], single_use: true}
---
id: deleg
match: {provider: ci, subject: deleg}
grant: {client_id: deleg, audiences: ["`+files+`", "`+ledger+`"], scopes: [files:read], may_act: [{provider: ci, subject_pattern: "files-server-.*"}]}
---
id: ops
match: {provider: ci, subject: ops}
grant: {client_id: ops, audiences: ["`+issuerURL+`/admin"], scopes: [mcpsts:admin]}
`), 0o600)
	cert, key, ca := productionFiles(t)
	replica := func(ln net.Listener) string {
		e := testEnv(nil)
		e.listener = handOver(ln.Addr().String(), ln)
		file := writeConfig(t, fmt.Sprintf(`
issuer: %s
listen: %s
store: %s
data_dir: %s
tls: {cert_file: %s, key_file: %s}
keys: {kek_file: %s}
trust_maps: {paths: [%s]}
providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}
introspection:
  callers: [{provider: ci, subject: files-server, audiences: ["%s"]}]
dpop: {require_nonce: true}
limits: {per_identity: {rate: 0.001, burst: 3}}
`, issuerURL, ln.Addr(), pg, t.TempDir(), cert, key, kek, maps, idp.URL, idpCA, files))
		startServe(t, e, "--config", file)
		return "https://" + ln.Addr().String()
	}
	a := replica(lnA)
	b := replica(lnB)
	c := clientTrusting(t, ca)
	jwt := func(sub string) string {
		n := time.Now().Unix()
		return idp.Sign(map[string]any{"iss": idp.URL, "sub": sub, "aud": issuerURL, "iat": n, "exp": n + 300, "jti": sub + fmt.Sprint(time.Now().UnixNano())}, nil)
	}
	post := func(base, path string, form url.Values, header ...string) (int, http.Header, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, resp.Header, body
	}
	exchangeAt := func(base, sub string, header ...string) (int, http.Header, map[string]any) {
		return post(base, "/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {jwt(sub)},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {files}}, header...)
	}
	asCaller := func(sub, token string) url.Values {
		return url.Values{"token": {token}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {jwt(sub)}}
	}
	active := func(base, token string) any {
		_, _, body := post(base, "/introspect", asCaller("files-server", token))
		return body["active"]
	}

	// Revocation at A, seen at B.
	status, _, body := exchangeAt(a, "agent")
	if status != 200 {
		t.Fatalf("token at A: %d %v", status, body)
	}
	tok := body["access_token"].(string)
	if got := active(b, tok); got != true {
		t.Fatalf("B before revocation: %v", got)
	}
	if status, _, body := post(a, "/revoke", asCaller("agent", tok)); status != 200 {
		t.Fatalf("revoke at A: %d %v", status, body)
	}
	if got := active(a, tok); got != false {
		t.Fatalf("A after its own revocation: %v", got)
	}
	// B may answer from its revocation cache for its bound
	// (tokens.revocation_cache_for, 500ms by default), not longer.
	revoked := time.Now()
	for active(b, tok) != false {
		if time.Since(revoked) > exchange.DefaultRevocationCacheFor+time.Second {
			t.Fatalf("B still says active %s after A's revocation", time.Since(revoked))
		}
	}
	t.Logf("B refused the token revoked at A after %s (bound %s)", time.Since(revoked).Round(time.Millisecond), exchange.DefaultRevocationCacheFor)

	// The same bound at B's admin API and B's delegation (one acceptor
	// per replica): each used at B first (its answer cached there), then
	// revoked at A, then refused by B within the bound.
	revokeAt := func(base, token, owner string) time.Time {
		t.Helper()
		if status, _, body := post(base, "/revoke", asCaller(owner, token)); status != 200 {
			t.Fatalf("revoke at %s: %d %v", base, status, body)
		}
		return time.Now()
	}
	within := func(what string, since time.Time, refused func() bool) {
		t.Helper()
		for !refused() {
			if time.Since(since) > exchange.DefaultRevocationCacheFor+time.Second {
				t.Fatalf("%s: still accepted %s after the revocation at A", what, time.Since(since))
			}
		}
		t.Logf("%s refused %s after the revocation at A (bound %s)", what, time.Since(since).Round(time.Millisecond), exchange.DefaultRevocationCacheFor)
	}
	status, _, body = post(a, "/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {jwt("ops")},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {issuerURL + "/admin"}, "scope": {"mcpsts:admin"}})
	if status != 200 {
		t.Fatalf("admin token at A: %d %v", status, body)
	}
	adminTok := body["access_token"].(string)
	adminAt := func(base string) int {
		req, _ := http.NewRequest(http.MethodGet, base+"/admin/v1/trust-maps", nil)
		req.Header.Set("Authorization", "Bearer "+adminTok)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := adminAt(b); got != 200 {
		t.Fatalf("admin token at B: %d", got)
	}
	since := revokeAt(a, adminTok, "ops")
	within("B's admin API", since, func() bool { return adminAt(b) == 401 })

	status, _, body = post(a, "/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {jwt("deleg")},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {files}})
	if status != 200 {
		t.Fatalf("incoming token at A: %d %v", status, body)
	}
	incoming := body["access_token"].(string)
	actor := 0
	delegateAt := func(base string) int {
		actor++ // an actor of its own each time: per-identity limits stay out of the way
		status, _, _ := post(base, "/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {incoming},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}, "resource": {ledger},
			"actor_token": {jwt(fmt.Sprintf("files-server-%d", actor))}, "actor_token_type": {"urn:ietf:params:oauth:token-type:jwt"}})
		return status
	}
	if got := delegateAt(b); got != 200 {
		t.Fatalf("delegation at B: %d", got)
	}
	since = revokeAt(a, incoming, "deleg")
	within("B's delegation", since, func() bool { return delegateAt(b) == 400 })

	// A single-use token used at A is spent at B.
	_, _, body = exchangeAt(b, "once")
	once := body["access_token"].(string)
	if got := active(a, once); got != true {
		t.Fatalf("single use, first at A: %v", got)
	}
	if got := active(b, once); got != false {
		t.Fatalf("single use, again at B: %v", got)
	}

	// DPoP: A's nonce is good at B; a proof used at B is refused by A.
	k, _ := dpop.GenerateKey()
	s, _ := dpop.NewSigner(k, nil)
	p0, _ := s.Proof("POST", issuerURL+"/token", "", "")
	status, h, body := exchangeAt(a, "agent", "DPoP", p0)
	if status != 400 || body["error"] != "use_dpop_nonce" || h.Get("DPoP-Nonce") == "" {
		t.Fatalf("no nonce at A: %d %v", status, body)
	}
	p1, _ := s.Proof("POST", issuerURL+"/token", "", h.Get("DPoP-Nonce"))
	status, _, body = exchangeAt(b, "agent", "DPoP", p1)
	if status != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("A's nonce at B: %d %v", status, body)
	}
	part := strings.Split(body["access_token"].(string), ".")[1]
	claims, _ := base64.RawURLEncoding.DecodeString(part)
	if !strings.Contains(string(claims), `"jkt":"`+s.JKT()+`"`) {
		t.Fatalf("cnf: %s", claims)
	}
	if status, _, body := exchangeAt(a, "agent", "DPoP", p1); status != 400 || body["error"] != "invalid_dpop_proof" {
		t.Fatalf("B's proof again at A: %d %v", status, body)
	}

	// The per-identity limit (burst 3) holds across the replicas, not 3
	// at each.
	for i, at := range []string{a, b, a} {
		if status, _, body := exchangeAt(at, "limited"); status != 200 {
			t.Fatalf("limited identity, request %d: %d %v", i+1, status, body)
		}
	}
	status, h, body = exchangeAt(b, "limited")
	if status != 429 || body["error"] != "slow_down" || h.Get("Retry-After") == "" {
		t.Fatalf("the 4th request, at the other replica: %d %v", status, body)
	}
}

// roundRobin is a loopback TCP proxy that sends each new connection to the
// next backend: the load balancer in front of replicas (TLS passes through).
func roundRobin(t *testing.T, backends ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var next atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, err := net.Dial("tcp", backends[int(next.Add(1)-1)%len(backends)])
				if err != nil {
					return
				}
				defer b.Close()
				go io.Copy(b, c)
				io.Copy(c, b)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestThreeReplicasBehindALoadBalancer: three serve processes on one
// PostgreSQL behind a round-robin proxy, every request on a new connection
// (so on the next replica): a single-use subject token used once is
// refused by the others; a trust-map change and a federation provider
// added through the admin API reach all three within the reload interval
// (1s here), measured; a consent revocation holds at all three from the
// next request.
func TestThreeReplicasBehindALoadBalancer(t *testing.T) {
	f := newReplicaFixture(t)
	pg, idp, idpCA, kek, maps := f.pg, f.idp, f.idpCA, f.kek, f.maps
	writeMap := func(audiences string) {
		os.WriteFile(filepath.Join(maps, "m.yaml"), []byte(`id: agent
match: {provider: ci, subject_pattern: "agent.*"}
grant: {client_id: agent, audiences: [`+audiences+`]}
---
id: added-later
match: {provider: ci2, subject: agent}
grant: {client_id: agent2, audiences: ["https://files.example.com/mcp"]}
`), 0o600)
	}
	writeMap(`"https://files.example.com/mcp"`)
	cert, key, ca := productionFiles(t)
	var lns []net.Listener
	var addrs []string
	for range 3 {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		lns, addrs = append(lns, ln), append(addrs, ln.Addr().String())
	}
	lb := "https://" + roundRobin(t, addrs...)
	// A corporate IdP for people (user-delegated exchanges), a second
	// workload issuer added through the admin API later, an administrator.
	dir := t.TempDir()
	corp, idp2 := federationtest.NewIssuer(t), federationtest.NewIssuer(t)
	corpCA, idp2CA := filepath.Join(dir, "corp.pem"), filepath.Join(dir, "idp2.pem")
	os.WriteFile(corpCA, corp.CAPEM(), 0o600)
	os.WriteFile(idp2CA, idp2.CAPEM(), 0o600)
	adminPKI, err := devpki.Ensure(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	adminCert, adminKey, _ := devpki.EnsureAdmin(dir, time.Now())
	var configs []string
	for _, ln := range lns {
		e := testEnv(nil)
		e.listener = handOver(ln.Addr().String(), ln)
		file := writeConfig(t, fmt.Sprintf(`
issuer: %s
listen: %s
store: %s
data_dir: %s
tls: {cert_file: %s, key_file: %s}
keys: {kek_file: %s}
trust_maps: {paths: [%s], reload_interval: 1s}
providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s, single_use: true}
  - {name: corp, kind: user, issuer: %s, discovery: true, ca_file: %s, audiences: [%s]}
admin: {client_ca_file: %s, client_names: [%s]}
`, lb, ln.Addr(), pg, t.TempDir(), cert, key, kek, maps, idp.URL, idpCA, corp.URL, corpCA, lb, adminPKI.CAPath, devpki.AdminName))
		configs = append(configs, file)
		startServe(t, e, "--config", file)
	}
	c := clientTrusting(t, ca)
	c.Transport.(*http.Transport).DisableKeepAlives = true // a new connection, the next replica, each time
	exchange := func(subjectToken, resource string) (int, map[string]any) {
		resp, err := c.PostForm(lb+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {subjectToken},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {resource}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	sign := func(sub string) string {
		n := time.Now().Unix()
		return idp.Sign(map[string]any{"iss": idp.URL, "sub": sub, "aud": lb, "iat": n, "exp": n + 300, "jti": fmt.Sprint(time.Now().UnixNano())}, nil)
	}
	once := sign("agent-1")
	if status, body := exchange(once, "https://files.example.com/mcp"); status != 200 {
		t.Fatalf("first use: %d %v", status, body)
	}
	for i := range 2 { // the two other replicas
		if status, body := exchange(once, "https://files.example.com/mcp"); status != 400 || body["error"] != "invalid_request" {
			t.Fatalf("replay %d: %d %v", i+1, status, body)
		}
	}
	// A trust-map change: every replica grants the new audience within the
	// reload interval; measured until three requests in a row (three
	// replicas) succeed.
	start := time.Now()
	writeMap(`"https://files.example.com/mcp", "https://audit.example.com/mcp"`)
	streak := 0
	for streak < 3 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the change did not reach all replicas in 10s")
		}
		if status, _ := exchange(sign("agent-2"), "https://audit.example.com/mcp"); status == 200 {
			streak++
		} else {
			streak = 0
			time.Sleep(50 * time.Millisecond)
		}
	}
	took := time.Since(start)
	// The figures are recorded in docs/SCALING.md; the test holds the
	// behaviour, with room for a loaded machine.
	t.Logf("a trust-map change reached all three replicas in %s (reload interval 1s)", took.Round(10*time.Millisecond))

	// A consent revocation (mcpsts consent revoke, on the store): no
	// replica issues alice's user-delegated token from the next request.
	const files = "https://files.example.com/mcp"
	delegated := func() (int, map[string]any) {
		n := time.Now().Unix()
		user := corp.Sign(map[string]any{"iss": corp.URL, "sub": "alice", "aud": lb, "iat": n, "exp": n + 300}, nil)
		resp, err := c.PostForm(lb+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"subject_token": {user}, "subject_token_type": {"urn:ietf:params:oauth:token-type:id_token"},
			"actor_token": {sign("agent-3")}, "actor_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {files}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	out, _, err := run(t, testEnv(nil), "consent", "grant", "--config", configs[0], "--provider", "corp", "--user", "alice", "--client", "agent", "--resource", files, "--ttl", "1h")
	id := regexp.MustCompile(`granted consent ([0-9a-f]+)`).FindStringSubmatch(out)
	if err != nil || id == nil {
		t.Fatalf("consent grant: %q %v", out, err)
	}
	for i := range 3 {
		if status, body := delegated(); status != 200 {
			t.Fatalf("user-delegated exchange %d with consent: %d %v", i+1, status, body)
		}
	}
	if _, _, err := run(t, testEnv(nil), "consent", "revoke", "--config", configs[1], id[1]); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	for i := range 3 {
		if status, body := delegated(); status != 400 || body["error"] != "invalid_grant" {
			t.Fatalf("user-delegated exchange %d after the revocation: %d %v", i+1, status, body)
		}
	}
	t.Logf("a consent revocation: refused by all three replicas from the next request (%s for the three)", time.Since(revoked).Round(time.Millisecond))

	// A federation provider added through the admin API at one replica:
	// measured until three requests in a row (three replicas) accept its
	// tokens.
	admin := clientTrusting(t, ca)
	pair, _ := tls.LoadX509KeyPair(adminCert, adminKey)
	admin.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{pair}
	req, _ := http.NewRequest(http.MethodPut, lb+"/admin/v1/providers/ci2",
		strings.NewReader(fmt.Sprintf(`{"name":"ci2","issuer":%q,"discovery":true,"ca_file":%q}`, idp2.URL, idp2CA)))
	req.Header.Set("If-None-Match", "*")
	resp, err := admin.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("add provider: %v %v", resp, err)
	}
	resp.Body.Close()
	start = time.Now()
	streak = 0
	for streak < 3 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the new provider did not reach all replicas in 10s")
		}
		n := time.Now().Unix()
		tok := idp2.Sign(map[string]any{"iss": idp2.URL, "sub": "agent", "aud": lb, "iat": n, "exp": n + 300}, nil)
		if status, _ := exchange(tok, files); status == 200 {
			streak++
		} else {
			streak = 0
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("a federation provider added at one replica reached all three in %s (reload interval 1s)", time.Since(start).Round(10*time.Millisecond))
}

// TestReplicasShareRedisLimits: two serve processes, each on its own
// embedded store, keep the per-identity limit in one Redis
// (limits.store: redis://…): a burst of 3 holds across both; the 4th
// request, at either, is 429 slow_down with Retry-After.
func TestReplicasShareRedisLimits(t *testing.T) {
	redisURL := os.Getenv("MCPSTS_TEST_REDIS")
	if redisURL == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("MCPSTS_TEST_REDIS is not set under CI")
		}
		t.Skip("MCPSTS_TEST_REDIS not set: no Redis for this test")
	}
	idp := federationtest.NewIssuer(t)
	idpCA := filepath.Join(t.TempDir(), "idp.pem")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	// A subject of this run only: buckets outlive a run in Redis.
	sub := fmt.Sprintf("agent-%d", time.Now().UnixNano())
	replica := func() (string, *http.Client) {
		broker, ca := serveBroker(t, `id: agent
match: {provider: ci, subject_pattern: "agent-.*"}
grant: {client_id: agent, audiences: ["https://files.example.com/mcp"]}
`, fmt.Sprintf(`limits: {store: %s, per_identity: {rate: 0.001, burst: 3}, per_client: {rate: 0}}
providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}`, redisURL, idp.URL, idpCA))
		return broker, clientTrusting(t, ca)
	}
	a, ca := replica()
	b, cb := replica()
	exchange := func(broker string, c *http.Client) (int, string, string) {
		n := time.Now().Unix()
		tok := idp.Sign(map[string]any{"iss": idp.URL, "sub": sub, "aud": broker, "iat": n, "exp": n + 300}, nil)
		resp, err := c.PostForm(broker+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {tok},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {"https://files.example.com/mcp"}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		code, _ := body["error"].(string)
		return resp.StatusCode, code, resp.Header.Get("Retry-After")
	}
	for i, r := range []struct {
		url string
		c   *http.Client
	}{{a, ca}, {b, cb}, {a, ca}} {
		if status, code, _ := exchange(r.url, r.c); status != 200 {
			t.Fatalf("request %d of the burst: %d %s", i+1, status, code)
		}
	}
	for _, r := range []struct {
		url string
		c   *http.Client
	}{{b, cb}, {a, ca}} {
		if status, code, retry := exchange(r.url, r.c); status != 429 || code != "slow_down" || retry == "" {
			t.Fatalf("past the burst at %s: %d %s Retry-After %q", r.url, status, code, retry)
		}
	}
}
