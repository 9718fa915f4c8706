package tlsserver

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/internal/devpki"
)

// testServer runs a Server with handler on a free loopback port until the
// test ends, and returns its URL and a client that trusts it.
type testServer struct {
	url   string
	addr  string
	roots *x509.CertPool

	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	stopErr  error
}

// stop cancels the server's context and returns what Serve returned; later
// calls return the same.
func (ts *testServer) stop() error {
	ts.stopOnce.Do(func() {
		ts.cancel()
		ts.stopErr = <-ts.done
	})
	return ts.stopErr
}

func startServer(t *testing.T, h http.Handler, limits Limits) *testServer {
	t.Helper()
	return startServerMin(t, h, limits, tls.VersionTLS12)
}

// startServerMin is startServer with the minimum TLS version minVersion.
func startServerMin(t *testing.T, h http.Handler, limits Limits, minVersion uint16) *testServer {
	t.Helper()
	pki, err := devpki.Ensure(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := Listen(Config{Addr: "127.0.0.1:0", TLS: TLSConfig(pki.Certificate, minVersion), Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{
		url: "https://" + s.Addr().String(), addr: s.Addr().String(),
		roots: x509.NewCertPool(), cancel: cancel, done: make(chan error, 1),
	}
	ts.roots.AddCert(pki.CA)
	go func() { ts.done <- s.Serve(ctx, h) }()
	t.Cleanup(func() { ts.stop() })
	return ts
}

func (ts *testServer) client(cfg *tls.Config) *http.Client {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg.RootCAs = ts.roots
	return &http.Client{
		Transport:     &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
}

func okHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	return mux
}

func TestHSTSOnEveryResponse(t *testing.T) {
	ts := startServer(t, okHandler(), DefaultLimits())
	c := ts.client(nil)
	for _, path := range []string{"/ok", "/missing"} {
		resp, err := c.Get(ts.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Strict-Transport-Security"); got != HSTS {
			t.Errorf("GET %s: Strict-Transport-Security = %q, want %q", path, got, HSTS)
		}
		if resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
			t.Errorf("GET %s: negotiated %v, want TLS 1.3 by default", path, resp.TLS)
		}
	}
}

func TestPlainHTTPIsRefusedNotRedirected(t *testing.T) {
	ts := startServer(t, okHandler(), DefaultLimits())
	conn, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ok HTTP/1.1\r\nHost: %s\r\n\r\n", ts.addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to plain HTTP: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain HTTP got status %d, want 400", resp.StatusCode)
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		t.Errorf("plain HTTP was redirected to %q", loc)
	}
	io.Copy(io.Discard, resp.Body)
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Error("connection still open after refusing plain HTTP")
	}
}

// versionRefused is the client's error when the server refuses the only
// versions it offers (a protocol_version alert): a refusal for the version,
// not for the cipher suites.
const versionRefused = "protocol version not supported"

func TestTLSVersionsAndSuites(t *testing.T) {
	ts := startServer(t, okHandler(), DefaultLimits())
	tests := []struct {
		name    string
		cfg     *tls.Config
		wantOK  bool
		wantErr string // a part of the handshake error, when it matters why
	}{
		// TLS 1.0 and 1.1 offered with suites the server does take in
		// TLS 1.2, so that only the version can be why they fail.
		{"TLS 1.0", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}, false, versionRefused},
		{"TLS 1.1", &tls.Config{MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11}, false, versionRefused},
		{"TLS 1.2 AES-GCM", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, true, ""},
		{"TLS 1.2 ChaCha20", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, true, ""},
		{"TLS 1.2 CBC-SHA1", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}, false, ""},
		{"TLS 1.2 CBC-SHA256", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}}, false, ""},
		{"TLS 1.2 RC4", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA}}, false, ""},
		{"TLS 1.2 3DES", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA, tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA}}, false, ""},
		{"TLS 1.3", &tls.Config{MinVersion: tls.VersionTLS13}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.RootCAs = ts.roots
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ts.addr, tt.cfg)
			if err == nil {
				conn.Close()
			}
			if (err == nil) != tt.wantOK || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("handshake error = %v, want success %v (%s)", err, tt.wantOK, tt.wantErr)
			}
		})
	}
}

// TestMinVersion13: with tls.min_version 1.3 a TLS 1.2 client is refused
// for its version, whatever suites it offers; a TLS 1.3 client is served.
func TestMinVersion13(t *testing.T) {
	ts := startServerMin(t, okHandler(), DefaultLimits(), tls.VersionTLS13)
	_, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ts.addr,
		&tls.Config{RootCAs: ts.roots, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}})
	if err == nil || !strings.Contains(err.Error(), versionRefused) {
		t.Fatalf("TLS 1.2 client: %v, want %q", err, versionRefused)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ts.addr, &tls.Config{RootCAs: ts.roots})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if v := conn.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("negotiated %x", v)
	}
}

func TestClientCertificateRequestedNotRequired(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			io.WriteString(w, "anonymous")
			return
		}
		io.WriteString(w, r.TLS.PeerCertificates[0].URIs[0].String())
	})
	ts := startServer(t, h, DefaultLimits())

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id, _ := url.Parse("spiffe://example.org/agent")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{id}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	clientCert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}

	for _, tt := range []struct {
		name string
		cfg  *tls.Config
		want string
	}{
		{"without certificate", &tls.Config{}, "anonymous"},
		{"with certificate", &tls.Config{Certificates: []tls.Certificate{clientCert}}, "spiffe://example.org/agent"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := ts.client(tt.cfg).Get(ts.url + "/")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != tt.want {
				t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, tt.want)
			}
		})
	}
}

func TestRequestLimits(t *testing.T) {
	limits := DefaultLimits()
	limits.MaxBodyBytes = 1024
	limits.MaxHeaderBytes = 4096
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "too big", http.StatusRequestEntityTooLarge)
			return
		}
		io.WriteString(w, "ok")
	})
	ts := startServer(t, h, limits)
	c := ts.client(&tls.Config{NextProtos: []string{"http/1.1"}})
	c.Transport.(*http.Transport).ForceAttemptHTTP2 = false

	post := func(body io.Reader, contentLength int64) int {
		req, _ := http.NewRequest("POST", ts.url+"/", body)
		req.ContentLength = contentLength
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(strings.NewReader(strings.Repeat("a", 1024)), 1024); got != 200 {
		t.Errorf("body at the cap: status %d, want 200", got)
	}
	if got := post(strings.NewReader(strings.Repeat("a", 1025)), 1025); got != 413 {
		t.Errorf("declared body over the cap: status %d, want 413", got)
	}
	if got := post(io.MultiReader(strings.NewReader(strings.Repeat("a", 4096))), -1); got != 413 {
		t.Errorf("streamed body over the cap: status %d, want 413", got)
	}

	req, _ := http.NewRequest("GET", ts.url+"/", nil)
	req.Header.Set("X-Big", strings.Repeat("h", 8192))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized headers: status %d, want 431", resp.StatusCode)
	}
}

func TestSlowHeadersAreCutOff(t *testing.T) {
	limits := DefaultLimits()
	limits.ReadHeaderTimeout = 200 * time.Millisecond
	ts := startServer(t, okHandler(), limits)
	conn, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: ts.roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /ok HTTP/1.1\r\nHost: x\r\n") // never finished
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("server kept a connection with unfinished headers open for 10s")
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("connection closed after %v, want about the 200ms header timeout", waited)
	}
}

func TestGracefulShutdown(t *testing.T) {
	t.Run("in-flight request finishes", func(t *testing.T) {
		started, release := make(chan struct{}), make(chan struct{})
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-release
			io.WriteString(w, "finished")
		})
		ts := startServer(t, h, DefaultLimits())
		type result struct {
			body string
			err  error
		}
		res := make(chan result, 1)
		go func() {
			resp, err := ts.client(nil).Get(ts.url + "/")
			if err != nil {
				res <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			res <- result{string(b), err}
		}()
		<-started
		stopped := make(chan error, 1)
		go func() { stopped <- ts.stop() }()
		time.Sleep(50 * time.Millisecond) // let Shutdown close the listener
		if _, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: ts.roots}); err == nil {
			t.Error("new connection accepted during shutdown")
		}
		close(release)
		if r := <-res; r.err != nil || r.body != "finished" {
			t.Fatalf("in-flight request: %q, %v; want it to finish", r.body, r.err)
		}
		if err := <-stopped; err != nil {
			t.Fatalf("Serve = %v, want nil after a clean shutdown", err)
		}
	})
	t.Run("stuck request is cut off at the bound", func(t *testing.T) {
		limits := DefaultLimits()
		limits.ShutdownTimeout = 200 * time.Millisecond
		started, release := make(chan struct{}), make(chan struct{})
		defer close(release)
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-release
		})
		ts := startServer(t, h, limits)
		go func() {
			resp, err := ts.client(nil).Get(ts.url + "/")
			if err == nil {
				resp.Body.Close()
			}
		}()
		<-started
		begin := time.Now()
		err := ts.stop()
		if err == nil || !strings.Contains(err.Error(), "shutdown timeout") {
			t.Fatalf("Serve = %v, want a shutdown-timeout error", err)
		}
		if took := time.Since(begin); took > 5*time.Second {
			t.Fatalf("shutdown took %v with a 200ms bound", took)
		}
	})
}

func TestListenErrors(t *testing.T) {
	if _, err := Listen(Config{Addr: "127.0.0.1:0", TLS: &tls.Config{}}); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("Listen without certificate = %v, want ErrNoCertificate", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pki, _ := devpki.Ensure(t.TempDir(), time.Now())
	_, err = Listen(Config{Addr: ln.Addr().String(), TLS: TLSConfig(pki.Certificate, 0)})
	if err == nil || !strings.Contains(err.Error(), "listen on "+ln.Addr().String()) {
		t.Errorf("Listen on a taken port = %v, want an error naming the address", err)
	}
}

func TestParseMinVersion(t *testing.T) {
	for in, want := range map[string]uint16{"": tls.VersionTLS12, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13} {
		if got, err := ParseMinVersion(in); err != nil || got != want {
			t.Errorf("ParseMinVersion(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"1.1", "1.0", "tls1.2", "2"} {
		if _, err := ParseMinVersion(in); err == nil {
			t.Errorf("ParseMinVersion(%q) accepted", in)
		}
	}
	if c := TLSConfig(tls.Certificate{}, tls.VersionTLS10); c.MinVersion != tls.VersionTLS12 {
		t.Errorf("TLSConfig with TLS 1.0 minimum gave %x", c.MinVersion)
	}
}
