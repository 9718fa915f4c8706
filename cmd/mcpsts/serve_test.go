package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/internal/devpki"
)

// syncBuffer is a bytes.Buffer safe to write from the server and read from
// the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testKEK is a key-encryption key for configured (non-dev) servers.
const testKEK = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

// testEnv is an environment holding vars and, unless vars says otherwise,
// MCPSTS_KEK.
func testEnv(vars map[string]string) env {
	return env{getenv: func(k string) string {
		if v, ok := vars[k]; ok || k != "MCPSTS_KEK" {
			return v
		}
		return testKEK
	}, now: time.Now}
}

// run runs mcpsts with args to completion.
func run(t *testing.T, e env, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut syncBuffer
	root := newRootCommand(e)
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// devEnv is an empty environment: --dev makes its own key-encryption key.
var devEnv = testEnv(map[string]string{"MCPSTS_KEK": ""})

// server is an mcpsts serve running in this process.
type server struct {
	addr, issuer, caPath string
	stdout, stderr       *syncBuffer
	client               *http.Client
	stop                 func() error
}

var (
	bannerAddr = regexp.MustCompile(`listening: (\S+)`)
	logAddr    = regexp.MustCompile(`"msg":"mcpsts serving","addr":"([^"]+)"|msg="mcpsts serving" addr=(\S+)`)
)

// startServe runs `mcpsts serve args…` until the test ends or stop is
// called, and waits for it to listen.
func startServe(t *testing.T, e env, args ...string) *server {
	t.Helper()
	s := &server{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	root := newRootCommand(e)
	root.SetArgs(append([]string{"serve"}, args...))
	root.SetOut(s.stdout)
	root.SetErr(s.stderr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() { runErr = root.ExecuteContext(ctx); close(done) }()
	s.stop = func() error {
		cancel()
		select {
		case <-done:
			return runErr
		case <-time.After(30 * time.Second):
			return fmt.Errorf("serve did not stop within 30s")
		}
	}
	t.Cleanup(func() { s.stop() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := bannerAddr.FindStringSubmatch(s.stdout.String()); m != nil {
			s.addr = m[1]
			break
		}
		if m := logAddr.FindStringSubmatch(s.stderr.String()); m != nil {
			s.addr = m[1] + m[2]
			break
		}
		select {
		case <-done:
			t.Fatalf("serve exited before listening: %v\nstderr: %s", runErr, s.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not listen within 30s\nstdout: %s\nstderr: %s", s.stdout, s.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m := regexp.MustCompile(`trust CA:\s+(\S+)`).FindStringSubmatch(s.stdout.String()); m != nil {
		s.caPath = m[1]
	}
	if m := regexp.MustCompile(`issuer:\s+(\S+)`).FindStringSubmatch(s.stdout.String()); m != nil {
		s.issuer = m[1]
	}
	return s
}

func clientTrusting(t *testing.T, caPEMFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caPEMFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestServeDev(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	s := startServe(t, devEnv, "--dev", "--data", data, "--listen", "127.0.0.1:0")

	out := s.stdout.String()
	wantCA := filepath.Join(data, "ca.pem")
	if s.caPath != wantCA {
		t.Fatalf("printed CA %q, want %q\n%s", s.caPath, wantCA, out)
	}
	if s.issuer != "https://"+s.addr {
		t.Errorf("printed issuer %q, want https://%s", s.issuer, s.addr)
	}
	curlCmd := "curl --cacert " + wantCA + " https://" + s.addr + "/.well-known/oauth-authorization-server"
	if !strings.Contains(out, "metadata:  "+curlCmd+"\n") {
		t.Errorf("banner lacks the ready-to-paste command %q:\n%s", curlCmd, out)
	}
	// The first token: the development identity, for the sample map.
	tryCmd := " token --dev --data " + data + " --audience https://127.0.0.1:9443/mcp --scope files:read\n"
	if !regexp.MustCompile(`(?m)^  try:       (mcpsts|go run ./cmd/mcpsts)` + regexp.QuoteMeta(tryCmd)).MatchString(out) {
		t.Errorf("banner lacks the first-token command %q:\n%s", tryCmd, out)
	}
	if fi, err := os.Stat(data); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory: %v, mode %v; want 0700", err, fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(data, "mcpsts.db")); err != nil {
		t.Errorf("no SQLite database in the data directory: %v", err)
	}

	c := clientTrusting(t, s.caPath)
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, body := get(t, c, "https://"+s.addr+path)
		if resp.StatusCode != 200 || !strings.Contains(body, `"status":"ok"`) {
			t.Errorf("GET %s = %d %q", path, resp.StatusCode, body)
		}
		if resp.Header.Get("Strict-Transport-Security") == "" {
			t.Errorf("GET %s: no HSTS header", path)
		}
	}
	// localhost is in the certificate too.
	_, port, _ := net.SplitHostPort(s.addr)
	if resp, _ := get(t, c, "https://localhost:"+port+"/healthz"); resp.StatusCode != 200 {
		t.Errorf("GET via localhost = %d", resp.StatusCode)
	}

	// Plain HTTP to the TLS port: 400, not a redirect.
	plain := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := plain.Get("http://" + s.addr + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
			t.Errorf("plain HTTP = %d (Location %q), want 400 and no redirect", resp.StatusCode, resp.Header.Get("Location"))
		}
	}

	if fi, err := os.Stat(filepath.Join(data, "kek")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key-encryption key: %v; want a 0600 file in the data directory", err)
	}
	kidsBefore := jwksKids(t, c, s.issuer)
	caBefore, _ := os.ReadFile(wantCA)
	certBefore, _ := os.ReadFile(filepath.Join(data, "server.pem"))
	if err := s.stop(); err != nil {
		t.Fatalf("serve returned %v after cancel, want nil", err)
	}

	// Restart: same CA, keys and database.
	s2 := startServe(t, devEnv, "--dev", "--data", data, "--listen", "127.0.0.1:0")
	caAfter, _ := os.ReadFile(wantCA)
	certAfter, _ := os.ReadFile(filepath.Join(data, "server.pem"))
	if !bytes.Equal(caBefore, caAfter) || !bytes.Equal(certBefore, certAfter) {
		t.Fatal("restart replaced the CA or the server certificate")
	}
	c2 := clientTrusting(t, s2.caPath)
	if resp, _ := get(t, c2, "https://"+s2.addr+"/readyz"); resp.StatusCode != 200 {
		t.Fatalf("restarted server /readyz = %d", resp.StatusCode)
	}
	if after := jwksKids(t, c2, s2.issuer); fmt.Sprint(after) != fmt.Sprint(kidsBefore) {
		t.Fatalf("restart changed the signing keys: %v, then %v", kidsBefore, after)
	}
}

// jwksKids follows the issuer's metadata to its JWKS and returns the kids.
func jwksKids(t *testing.T, c *http.Client, issuer string) []string {
	t.Helper()
	resp, body := get(t, c, issuer+"/.well-known/oauth-authorization-server")
	if resp.StatusCode != 200 {
		t.Fatalf("metadata: %d", resp.StatusCode)
	}
	var md struct {
		JWKSURI string `json:"jwks_uri"`
	}
	json.Unmarshal([]byte(body), &md)
	resp, body = get(t, c, md.JWKSURI)
	if resp.StatusCode != 200 {
		t.Fatalf("JWKS: %d", resp.StatusCode)
	}
	var set struct{ Keys []struct{ Kid string } }
	json.Unmarshal([]byte(body), &set)
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	if len(kids) == 0 {
		t.Fatal("no keys published")
	}
	return kids
}

// productionFiles writes a CA-issued certificate and returns its paths.
func productionFiles(t *testing.T) (cert, key, ca string) {
	t.Helper()
	dir := t.TempDir()
	if _, err := devpki.Ensure(dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"), filepath.Join(dir, "ca.pem")
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mcpsts.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServeConfig(t *testing.T) {
	cert, key, ca := productionFiles(t)
	data := filepath.Join(t.TempDir(), "state")
	file := writeConfig(t, fmt.Sprintf(`
issuer: https://sts.example.com
listen: 127.0.0.1:0
data_dir: %s
tls:
  cert_file: %s
  key_file: %s
  min_version: "1.3"
log:
  format: json
`, data, cert, key))

	stdout, _, err := run(t, testEnv(nil), "serve", "--config", file, "--check")
	if err != nil || stdout != file+": configuration is valid\n" {
		t.Fatalf("--check = %q, %v", stdout, err)
	}
	if _, err := os.Stat(data); err == nil {
		t.Fatal("--check created the data directory")
	}

	s := startServe(t, testEnv(nil), "--config", file)
	c := clientTrusting(t, ca)
	resp, _ := get(t, c, "https://"+s.addr+"/readyz")
	if resp.StatusCode != 200 || resp.TLS.Version != tls.VersionTLS13 {
		t.Fatalf("/readyz = %d over %x", resp.StatusCode, resp.TLS.Version)
	}
	if !strings.Contains(s.stderr.String(), `"msg":"mcpsts serving"`) || !strings.Contains(s.stderr.String(), `"issuer":"https://sts.example.com"`) {
		t.Errorf("JSON start log missing: %s", s.stderr)
	}
	tls12 := clientTrusting(t, ca)
	tls12.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS12
	if _, err := tls12.Get("https://" + s.addr + "/healthz"); err == nil {
		t.Error("TLS 1.2 accepted with tls.min_version 1.3")
	}
}

func TestServeSelfSignedWarning(t *testing.T) {
	dir := t.TempDir()
	if _, err := devpki.Ensure(dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	// The dev CA certificate is self-signed; serve it as the server certificate.
	file := writeConfig(t, fmt.Sprintf(`
issuer: https://sts.example.com
listen: 127.0.0.1:0
data_dir: %s
tls: {cert_file: %s, key_file: %s, allow_self_signed: true}
`, t.TempDir(), filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")))
	s := startServe(t, testEnv(nil), "--config", file)
	if !strings.Contains(s.stderr.String(), "level=WARN msg=\"serving a self-signed certificate") {
		t.Fatalf("no warning for the self-signed certificate:\n%s", s.stderr)
	}

	refused := writeConfig(t, fmt.Sprintf("issuer: https://sts.example.com\ntls: {cert_file: %s, key_file: %s}\n",
		filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")))
	_, _, err := run(t, testEnv(nil), "serve", "--config", refused)
	if err == nil || !strings.Contains(err.Error(), "tls.cert_file: certificate") || !strings.Contains(err.Error(), "is self-signed") {
		t.Fatalf("self-signed without allow_self_signed: err = %v", err)
	}
}

func TestServeErrors(t *testing.T) {
	cert, key, _ := productionFiles(t)
	file := t.TempDir() + "/file"
	os.WriteFile(file, nil, 0o600)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	fresh := filepath.Join(t.TempDir(), "fresh")

	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantErr   []string
		notExists string // must not exist afterwards
	}{
		{"no mode", []string{"serve"}, nil, []string{"serve needs --dev or --config FILE"}, ""},
		{"both modes", []string{"serve", "--dev", "--config", "x.yaml"}, nil, []string{"[config dev] were all set"}, ""},
		{"check without config", []string{"serve", "--dev", "--check"}, nil, []string{"--check validates a --config file"}, ""},
		{"listen with config", []string{"serve", "--config", "x.yaml", "--listen", ":1"}, nil, []string{"--data and --listen go with --dev"}, ""},
		{"bad listen", []string{"serve", "--dev", "--listen", "8443"}, nil, []string{`--listen: "8443" is not host:port`}, ""},
		{"missing config", []string{"serve", "--config", "/no/such.yaml"}, nil, []string{"/no/such.yaml: cannot read configuration: no such file or directory"}, ""},
		{"invalid config, every problem", []string{"serve", "--config", writeConfig(t, "issuer: http://x\nlisten: nope\ntls: {cert_file: /a, key_file: /b}\nbogus: 1\n")}, nil, []string{
			"invalid configuration:",
			"mcpsts.yaml:4: bogus: unknown field",
		}, ""},
		{"invalid config values", []string{"serve", "--config", writeConfig(t, "issuer: http://x\nlisten: nope\ntls: {cert_file: /a, key_file: /b}\n")}, nil, []string{
			`mcpsts.yaml:1: issuer: "http://x" must use https`,
			`mcpsts.yaml:2: listen: "nope" is not host:port`,
			"mcpsts.yaml:3: tls.cert_file: no such file or directory (/a)",
			"mcpsts.yaml:3: tls.key_file: no such file or directory (/b)",
		}, ""},
		{"data dir under a file", []string{"serve", "--dev", "--data", file + "/sub", "--listen", "127.0.0.1:0"}, nil, []string{"data directory " + file + "/sub: not a directory"}, ""},
		{"port taken removes the new data dir", []string{"serve", "--dev", "--data", fresh, "--listen", busy.Addr().String()}, nil, []string{"listen on " + busy.Addr().String() + ": ", "address already in use"}, fresh},
		{"store does not connect", []string{"serve", "--config", writeConfig(t, fmt.Sprintf("issuer: https://sts.example\nlisten: 127.0.0.1:0\ntls: {cert_file: %s, key_file: %s}\n", cert, key))},
			map[string]string{"MCPSTS_STORE": "postgres://mcpsts:hunter2@127.0.0.1:1/mcpsts?sslmode=disable&connect_timeout=2"},
			[]string{"store: cannot connect to postgres://mcpsts:xxxxx@127.0.0.1:1/mcpsts"}, ""},
		{"bad tracing exporter", []string{"serve", "--dev", "--data", filepath.Join(t.TempDir(), "d"), "--listen", "127.0.0.1:0"},
			map[string]string{"OTEL_TRACES_EXPORTER": "jaeger"}, []string{`OTEL_TRACES_EXPORTER="jaeger" is not supported`}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := run(t, testEnv(tt.env), tt.args...)
			if err == nil {
				t.Fatal("succeeded, want an error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks a password: %v", err)
			}
			if tt.notExists != "" {
				if _, err := os.Stat(tt.notExists); err == nil {
					t.Errorf("%s was left behind by a failed start", tt.notExists)
				}
			}
		})
	}
}

func TestVersion(t *testing.T) {
	out, _, err := run(t, testEnv(nil), "version")
	if err != nil || !regexp.MustCompile(`^mcpsts \S+ \(go1\.\d+.*, \w+/\w+\)\n$`).MatchString(out) {
		t.Fatalf("version = %q, %v", out, err)
	}
}

// TestBinarySIGTERM builds the real binary, serves, and stops it with
// SIGTERM: it must exit 0 after a graceful shutdown.
func TestBinarySIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	data := filepath.Join(t.TempDir(), "data")
	cmd, addr, stderr := startBinaryDev(t, data)
	if resp, _ := get(t, clientTrusting(t, filepath.Join(data, "ca.pem")), "https://"+addr+"/healthz"); resp.StatusCode != 200 {
		t.Fatalf("/healthz = %d", resp.StatusCode)
	}
	terminate(t, cmd, stderr)
	if !strings.Contains(stderr.String(), "mcpsts stopped") {
		t.Errorf("no clean-stop log line: %s", stderr.String())
	}
}

// startBinaryDev builds the mcpsts binary and runs `serve --dev` with data
// until the test ends; it returns the process, its address and its
// standard error.
func startBinaryDev(t *testing.T, data string) (*exec.Cmd, string, *syncBuffer) {
	t.Helper()
	return startBinary(t, nil, "serve", "--dev", "--data", data, "--listen", "127.0.0.1:0")
}

// startBinary builds mcpsts and runs it with args in the environment env
// (added to this process's), and returns it with the address its banner
// names.
func startBinary(t *testing.T, env []string, args ...string) (*exec.Cmd, string, *syncBuffer) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mcpsts")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stdout, _ := cmd.StdoutPipe()
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	// The address: in the --dev banner on stdout, else in the log line
	// "mcpsts serving" on stderr.
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := bannerAddr.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case addr := <-found:
			return cmd, addr, stderr
		default:
		}
		if m := servingAddr.FindStringSubmatch(stderr.String()); m != nil {
			return cmd, m[1], stderr
		}
		if time.Now().After(deadline) {
			t.Fatalf("no address printed in 60s; stderr: %s", stderr.String())
		}
	}
}

// servingAddr finds the address in the server's start-up log line.
var servingAddr = regexp.MustCompile(`msg="?mcpsts serving"?.*?addr"?[=:]"?([0-9.]+:[0-9]+)`)

// terminate sends SIGTERM to the binary and waits for a clean exit, at
// most 30 s.
func terminate(t *testing.T, cmd *exec.Cmd, stderr *syncBuffer) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30s of SIGTERM")
	}
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestServeCheckSecretModes: serve --check reports a private key that
// others can read, with the chmod to run, and exits non-zero.
func TestServeCheckSecretModes(t *testing.T) {
	cert, key, _ := productionFiles(t)
	file := writeConfig(t, fmt.Sprintf("issuer: https://sts.example.com\ndata_dir: %s\ntls: {cert_file: %s, key_file: %s}\n", t.TempDir(), cert, key))
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, testEnv(nil), "serve", "--config", file, "--check")
	if err == nil || !strings.Contains(err.Error(), "tls.key_file: "+key+" holds a secret but its mode 0644 lets group or others at it: run chmod 600 "+key) {
		t.Fatalf("--check = %v", err)
	}
}

// TestServeBusyPort: serve --dev on an address another process holds says
// which flag picks another, and exits 2.
func TestServeBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, _, err = run(t, devEnv, "serve", "--dev", "--data", t.TempDir(), "--listen", ln.Addr().String())
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitConfig || !strings.Contains(err.Error(), "address already in use") ||
		!strings.Contains(err.Error(), "another process listens on "+ln.Addr().String()+"; give serve --dev another address with --listen") {
		t.Fatalf("serve --dev on a busy port: %v", err)
	}
}
