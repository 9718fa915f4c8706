package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/exchange/client"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.now = c.now.Add(d) }

// broker is a fake broker: metadata and a token endpoint that counts.
type broker struct {
	srv       *httptest.Server
	exchanges atomic.Int64
	fail      atomic.Bool
	delay     time.Duration
	lastForm  atomic.Value
}

func newBroker(t *testing.T) *broker {
	b := &broker{}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": b.srv.URL, "token_endpoint": b.srv.URL + "/token"})
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		n := b.exchanges.Add(1)
		r.ParseForm()
		b.lastForm.Store(r.PostForm)
		time.Sleep(b.delay)
		if b.fail.Load() {
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": "the credential was refused: token_expired", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"access_token": "at-" + string(rune('0'+n)), "token_type": "Bearer", "expires_in": 100, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})
	})
	b.srv = httptest.NewTLSServer(mux)
	t.Cleanup(b.srv.Close)
	return b
}

type staticSource struct{}

func (staticSource) Name() string { return "static" }
func (staticSource) Evidence(context.Context, string) (client.Evidence, error) {
	return client.Evidence{Token: "a.b.c", TokenType: "urn:ietf:params:oauth:token-type:jwt"}, nil
}

func newClient(t *testing.T, b *broker, clk *clock) *client.Client {
	c, err := client.New(b.srv.URL, staticSource{}, client.Options{HTTPClient: b.srv.Client(), Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTokenSourceSharesOneExchange(t *testing.T) {
	b := newBroker(t)
	b.delay = 50 * time.Millisecond
	clk := &clock{now: time.Now()}
	ts := newClient(t, b, clk).TokenSource("https://mcp.example.com/mcp", "read")
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ts.Get(context.Background()); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := b.exchanges.Load(); n != 1 {
		t.Fatalf("%d exchanges for 100 concurrent callers, want 1", n)
	}
	form := b.lastForm.Load().(url.Values)
	if form["resource"][0] != "https://mcp.example.com/mcp" || form["scope"][0] != "read" || form["subject_token"][0] != "a.b.c" {
		t.Fatalf("form %v", form)
	}
}

func TestTokenSourceRefreshAndFailure(t *testing.T) {
	b := newBroker(t)
	clk := &clock{now: time.Now()}
	c := newClient(t, b, clk)
	ts := c.TokenSource("https://mcp.example.com/mcp")
	if ts != c.TokenSource("https://mcp.example.com/mcp") {
		t.Fatal("the same (audience, scopes) got another TokenSource")
	}
	ctx := context.Background()
	first, _ := ts.Get(ctx)
	clk.Add(70 * time.Second) // before 75% (80% minus the largest jitter)
	if tok, _ := ts.Get(ctx); tok.AccessToken != first.AccessToken || b.exchanges.Load() != 1 {
		t.Fatal("refreshed before 80% of the lifetime")
	}
	clk.Add(11 * time.Second) // past 80%
	second, err := ts.Get(ctx)
	if err != nil || second.AccessToken == first.AccessToken || b.exchanges.Load() != 2 {
		t.Fatalf("no refresh after 80%%: %v %v", second, err)
	}

	// The broker fails: the still-valid token keeps being served, and a
	// backoff stops every call from retrying.
	b.fail.Store(true)
	clk.Add(81 * time.Second)
	tok, err := ts.Get(ctx)
	if err != nil || tok.AccessToken != second.AccessToken {
		t.Fatalf("valid token not served while the broker fails: %v %v", tok, err)
	}
	n := b.exchanges.Load()
	for range 10 {
		ts.Get(ctx)
	}
	if b.exchanges.Load() != n {
		t.Fatalf("%d retries within the backoff", b.exchanges.Load()-n)
	}
	// Expired: never returned.
	clk.Add(30 * time.Second)
	if tok, err := ts.Get(ctx); err == nil {
		t.Fatalf("an expired token was returned: %+v", tok)
	} else {
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Step != client.StepExchange || ce.Code != "invalid_request" || !strings.Contains(ce.Error(), "token_expired") || ce.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || !strings.HasSuffix(ce.Error(), " (trace ID 4bf92f3577b34da6a3ce929d0e0e4736)") {
			t.Fatalf("error %v", err)
		}
	}
}

func TestClientErrors(t *testing.T) {
	if _, err := client.New("http://sts.example.com", staticSource{}, client.Options{}); err == nil || !strings.Contains(err.Error(), "plain http is refused") {
		t.Fatalf("http broker: %v", err)
	}
	b := newBroker(t)
	c, _ := client.New(b.srv.URL+"/other", staticSource{}, client.Options{HTTPClient: b.srv.Client()})
	if _, err := c.Exchange(context.Background(), "https://mcp.example.com/mcp", nil); err == nil || !strings.Contains(err.Error(), "discovery failed") {
		t.Fatalf("wrong issuer: %v", err)
	}
	dead, _ := client.New("https://127.0.0.1:1", staticSource{}, client.Options{})
	_, err := dead.Exchange(context.Background(), "https://mcp.example.com/mcp", nil)
	if !client.IsUnreachable(err) {
		t.Fatalf("unreachable broker: %v", err)
	}
}

func TestSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	os.WriteFile(file, []byte("h.p.s1\n"), 0o600)
	fs := client.FileSource{Path: file}
	ev, err := fs.Evidence(context.Background(), "")
	if err != nil || ev.Token != "h.p.s1" {
		t.Fatalf("file source: %v %v", ev, err)
	}
	os.WriteFile(file, []byte("h.p.s2"), 0o600) // rotated in place
	if ev, _ := fs.Evidence(context.Background(), ""); ev.Token != "h.p.s2" {
		t.Fatal("the file source did not re-read its file")
	}
	os.WriteFile(file, []byte("not a jwt"), 0o600)
	if _, err := fs.Evidence(context.Background(), ""); err == nil {
		t.Fatal("a non-JWT was accepted")
	}

	actions := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer runtime-token" || r.URL.Query().Get("audience") != "https://sts.example.com" {
			w.WriteHeader(401)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"value": "gh.oidc.token"})
	}))
	defer actions.Close()
	env := map[string]string{"ACTIONS_ID_TOKEN_REQUEST_URL": actions.URL + "/?api-version=2.0", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runtime-token", "MCPSTS_K8S_TOKEN_FILE": filepath.Join(dir, "none")}
	getenv := func(k string) string { return env[k] }
	src, err := client.SourceByName("auto", getenv)
	if err != nil || src.Name() != "github" {
		t.Fatalf("auto with Actions variables: %v %v", src, err)
	}
	gh := src.(client.GitHubSource)
	gh.HTTP = actions.Client()
	if ev, err := gh.Evidence(context.Background(), "https://sts.example.com"); err != nil || ev.Token != "gh.oidc.token" {
		t.Fatalf("github source: %v %v", ev, err)
	}
	env["MCPSTS_K8S_TOKEN_FILE"] = file
	if src, _ := client.SourceByName("auto", getenv); src.Name() != "k8s" {
		t.Fatalf("auto with a k8s token file chose %s", src.Name())
	}
	if _, err := client.SourceByName("auto", func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "no source found") {
		t.Fatalf("auto with nothing: %v", err)
	}
	if _, err := client.SourceByName("openstack", getenv); err == nil {
		t.Fatal("an unknown source was accepted")
	}
	if src, err := client.SourceByName("azure", getenv); err != nil || src.Name() != "azure" {
		t.Fatalf("azure source: %v %v", src, err)
	}
	if src, _ := client.SourceByName("auto", func(k string) string {
		return map[string]string{"IDENTITY_ENDPOINT": "x", "MCPSTS_K8S_TOKEN_FILE": filepath.Join(dir, "none")}[k]
	}); src == nil || src.Name() != "azure" {
		t.Fatalf("auto with IDENTITY_ENDPOINT chose %v", src)
	}
	if src, err := client.SourceByName("gcp", getenv); err != nil || src.Name() != "gcp" {
		t.Fatalf("gcp source: %v %v", src, err)
	}
	md := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" || r.URL.Query().Get("audience") != "https://sts.example.com" || r.URL.Query().Get("format") != "full" {
			w.WriteHeader(400)
			return
		}
		w.Write([]byte("gce.identity.token"))
	}))
	defer md.Close()
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(md.URL, "http://"))
	if src, _ := client.SourceByName("auto", func(k string) string {
		return map[string]string{"GCE_METADATA_HOST": "x", "MCPSTS_K8S_TOKEN_FILE": filepath.Join(dir, "none")}[k]
	}); src == nil || src.Name() != "gcp" {
		t.Fatalf("auto with GCE_METADATA_HOST chose %v", src)
	}
	if ev, err := (client.GCPSource{HTTP: md.Client()}).Evidence(context.Background(), "https://sts.example.com"); err != nil || ev.Token != "gce.identity.token" || ev.TokenType != "urn:ietf:params:oauth:token-type:jwt" {
		t.Fatalf("gcp source: %v %v", ev, err)
	}
	if src, err := client.SourceByName("aws", getenv); err != nil || src.Name() != "aws" {
		t.Fatalf("aws source: %v %v", src, err)
	}
}
