package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/internal/auditlog"
	"github.com/mcpsts/mcpsts/internal/devpki"
	"github.com/mcpsts/mcpsts/internal/telemetry"
	"github.com/mcpsts/mcpsts/internal/tlsserver"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/issuer/keystoretest"
	"github.com/mcpsts/mcpsts/trustmaps"
)

const loadMap = `id: load
match: {provider: idp, subject: "system:serviceaccount:load:agent"}
grant: {client_id: load-agent, audiences: ["https://mcp.example.com/mcp"], scopes: [read], default_scopes: [read]}
`

// runServer serves /token (the full endpoint, audit on), /token-noaudit
// (the same without spans, audit log or metrics) and /baseline until
// interrupted.
func runServer() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if path := os.Getenv("TOKENLOAD_CPUPROFILE"); path != "" { // go tool pprof it
		f, err := os.Create(path)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	pem, err := os.ReadFile(os.Getenv("TOKENLOAD_IDP_CA"))
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots}
	prov, err := federation.NewProvider(federation.ProviderConfig{Name: "idp", Issuer: os.Getenv("TOKENLOAD_IDP"), Discovery: true,
		Fetcher: federation.NewFetcher(federation.FetcherOptions{Transport: tr})})
	if err != nil {
		log.Fatal(err)
	}
	if err := prov.Refresh(ctx); err != nil {
		log.Fatal(err)
	}
	verifier, err := oidc.NewVerifier(oidc.Options{CacheEntries: 10_000}, oidc.ProviderConfig{Keys: prov, Audiences: []string{"https://sts.example.com"}})
	if err != nil {
		log.Fatal(err)
	}
	policy, err := trustmaps.Compile(trustmaps.Document{Name: "load.yaml", Data: []byte(loadMap)})
	if err != nil {
		log.Fatal(err)
	}
	text, _ := issuer.GenerateKEK()
	kek, _ := issuer.ParseKEK(text)
	iss, err := issuer.New(issuer.Config{Issuer: "https://sts.example.com", Store: keystoretest.NewMemory(), Local: &issuer.LocalKeys{KEK: kek, Algorithm: issuer.ES256}})
	if err != nil || iss.Start(ctx) != nil {
		log.Fatal("issuer: ", err)
	}
	// Audit on, as the server runs: every decision a line of the
	// hash-chained audit log on disk, metrics recorded, and, with no
	// collector configured (the default), no spans. With
	// TOKENLOAD_COLLECTOR=1, as with an exporter: a server span and a span
	// per step for every request, batched to an exporter (which drops
	// them, so that no encoding is measured as the endpoint's cost).
	dir, _ := os.MkdirTemp("", "tokenload-server")
	defer os.RemoveAll(dir)
	audit, err := auditlog.Open(filepath.Join(dir, "audit.log"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer audit.Close()
	var tracer trace.Tracer
	if os.Getenv("TOKENLOAD_COLLECTOR") == "1" { // the server's own span pipeline
		tp, err := telemetry.New(ctx, telemetry.Options{Getenv: func(string) string { return "" }, Exporter: tracetest.NewNoopExporter()})
		if err != nil {
			log.Fatal(err)
		}
		tp.RegisterSpanProcessor(audit.Processor(func(sdktrace.ReadOnlySpan) (string, bool) { return "", false })) // admin changes only
		defer tp.Shutdown(context.Background())
		tracer = tp.Tracer("mcpsts")
	}
	meters := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))

	mux := http.NewServeMux()
	endpoint := func(c exchange.Config) http.Handler {
		c.Self = []string{"https://sts.example.com"}
		c.Attestors = map[string]attest.Attestor{exchange.TokenTypeJWT: verifier}
		c.Decider, c.Minter = policy, iss
		return exchange.NewHandler(c)
	}
	mux.Handle("/token", endpoint(exchange.Config{Tracer: tracer, Audit: audit, Meter: meters.Meter("mcpsts")}))
	mux.Handle("/token-noaudit", endpoint(exchange.Config{})) // no spans, no audit log, no metrics
	// The full endpoint with a DPoP proof on every request: one more ES256
	// verification and a replay-cache write (in memory here, as the
	// replay cache is off for subject tokens).
	mux.Handle("/token-dpop", endpoint(exchange.Config{Tracer: tracer, Audit: audit, Meter: meters.Meter("mcpsts"),
		TokenURL: DPoPTokenURL, DPoP: &dpop.Verifier{Replay: &memoryReplay{seen: map[string]time.Time{}}}}))
	mux.Handle("/baseline", baseline(prov, iss))

	pki, err := devpki.Ensure(dir, time.Now())
	if err != nil {
		log.Fatal(err)
	}
	limits := tlsserver.DefaultLimits()
	srv, err := tlsserver.Listen(tlsserver.Config{Addr: "127.0.0.1:0", TLS: tlsserver.TLSConfig(pki.Certificate, tls.VersionTLS12), Limits: limits})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("ADDR %s\nCA %s\n", srv.Addr(), pki.CAPath)
	var h http.Handler = mux
	if os.Getenv("TOKENLOAD_CPUPROFILE") != "" { // samples labelled by endpoint: go tool pprof -tagfocus path=/token
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			pprof.Do(r.Context(), pprof.Labels("path", r.URL.Path), func(context.Context) { mux.ServeHTTP(w, r) })
		})
	}
	if err := srv.Serve(ctx, h); err != nil {
		log.Fatal(err)
	}
}

// DPoPTokenURL is the htu of the load's DPoP proofs.
const DPoPTokenURL = "https://sts.example.com/token-dpop"

// memoryReplay is a replay cache in memory, bounded by the run's requests.
type memoryReplay struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func (m *memoryReplay) Claim(_ context.Context, key string, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.seen[key]; ok {
		return attest.ErrReplayed
	}
	m.seen[key] = until
	return nil
}

// baseline verifies the subject token with the issuer's key and signs a
// token: no policy, no store, no spans.
func baseline(prov *federation.Provider, iss *issuer.Issuer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", 400)
			return
		}
		claims := jwt.MapClaims{}
		_, err := jwt.ParseWithClaims(r.PostForm.Get("subject_token"), claims, func(t *jwt.Token) (any, error) {
			kid, _ := t.Header["kid"].(string)
			return prov.Key(r.Context(), kid, t.Method.Alg())
		}, jwt.WithValidMethods([]string{"ES256"}))
		if err != nil {
			http.Error(w, "bad token", 400)
			return
		}
		sub, _ := claims["sub"].(string)
		tok, err := iss.Mint(r.Context(), issuer.Grant{Subject: "idp/" + sub, Audience: r.PostForm.Get("resource"), ClientID: "load-agent", Scopes: strings.Fields("read")})
		if err != nil {
			http.Error(w, "mint", 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": tok.Raw, "token_type": "Bearer", "expires_in": 900})
	})
}
