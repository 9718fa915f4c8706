package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/mcpsts/mcpsts/attest"
	awsattest "github.com/mcpsts/mcpsts/attest/aws"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/internal/admin"
	"github.com/mcpsts/mcpsts/internal/auditlog"
	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/internal/devpki"
	"github.com/mcpsts/mcpsts/internal/health"
	"github.com/mcpsts/mcpsts/internal/mapfiles"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/internal/telemetry"
	"github.com/mcpsts/mcpsts/internal/tlsserver"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/trustmaps"
)

type serveFlags struct {
	dev    bool
	config string
	check  bool
	data   string
	listen string
}

func newServeCommand(e env) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve (--dev | --config FILE [--check])",
		Short: "Run the mcpsts server over HTTPS",
		Long: `Run the mcpsts server.

--dev runs on embedded defaults: a data directory (--data) holding a SQLite
database, a local CA and a server certificate for localhost and 127.0.0.1,
listening on --listen. Restarting reuses them.

--config FILE runs from a YAML configuration; --check only validates it.
These environment variables override the file: ` + strings.Join(config.EnvVars(), ", ") + `.
Tracing is configured by the standard OTEL_* variables (OTEL_TRACES_EXPORTER=otlp|console|none).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.validate(cmd); err != nil {
				return err
			}
			return runServe(cmd.Context(), f, e, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.dev, "dev", false, "run on embedded defaults (SQLite, generated local CA and keys)")
	fl.StringVar(&f.config, "config", "", "YAML configuration `file`")
	fl.BoolVar(&f.check, "check", false, "validate the --config file and exit")
	fl.StringVar(&f.data, "data", ".mcpsts", "with --dev: data `directory`")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8443", "with --dev: HTTPS listen `address` (port 0 picks a free port)")
	cmd.MarkFlagsMutuallyExclusive("dev", "config")
	return cmd
}

func (f serveFlags) validate(cmd *cobra.Command) error {
	switch {
	case !f.dev && f.config == "":
		return errors.New("serve needs --dev or --config FILE")
	case f.check && f.config == "":
		return errors.New("--check validates a --config file")
	case f.config != "" && (cmd.Flags().Changed("data") || cmd.Flags().Changed("listen")):
		return errors.New("--data and --listen go with --dev; with --config set data_dir and listen in the file (or MCPSTS_DATA_DIR, MCPSTS_LISTEN)")
	case f.dev:
		if p := config.ListenProblem(f.listen); p != "" {
			return fmt.Errorf("--listen: %s", p)
		}
		if f.data == "" {
			return errors.New("--data: required")
		}
	}
	return nil
}

func runServe(ctx context.Context, f serveFlags, e env, stdout, stderr io.Writer) (err error) {
	var cfg *config.Config
	if f.dev {
		cfg = devConfig(f.data, f.listen)
	} else {
		if cfg, err = config.Load(f.config, e.getenv, e.now()); err != nil {
			return fmt.Errorf("invalid configuration:\n%w", err)
		}
		if f.check {
			fmt.Fprintf(stdout, "%s: configuration is valid\n", f.config)
			return nil
		}
	}
	log := newLogger(stderr, cfg.Log)

	// Nothing half-created: a data directory this run made is removed again
	// if start-up fails.
	if f.dev || cfg.Store == "" {
		var created bool
		if created, err = ensureDataDir(cfg.DataDir); err != nil {
			return err
		}
		if created {
			defer func() {
				if err != nil { // the named result: whatever failed later
					os.RemoveAll(cfg.DataDir)
				}
			}()
		}
	}
	var cert tls.Certificate
	var caPath, adminCert string
	if f.dev {
		pki, err := devpki.Ensure(cfg.DataDir, e.now())
		if err != nil {
			return err
		}
		cert, caPath = pki.Certificate, pki.CAPath
		// The development administrator authenticates to the admin API
		// with a client certificate from the local CA.
		if adminCert, _, err = devpki.EnsureAdmin(cfg.DataDir, e.now()); err != nil {
			return err
		}
		cfg.Admin.ClientCAFile, cfg.Admin.ClientNames = pki.CAPath, []string{devpki.AdminName}
	} else {
		var selfSigned bool
		cert, selfSigned, err = tlsserver.LoadCertificate(cfg.TLS.CertFile, cfg.TLS.KeyFile, e.now(), cfg.TLS.AllowSelfSigned)
		if err != nil {
			return err
		}
		if selfSigned {
			log.Warn("serving a self-signed certificate (tls.allow_self_signed: true): clients must pin it", "cert_file", cfg.TLS.CertFile)
		}
	}

	st, err := store.Open(ctx, cfg.StoreURL())
	if err != nil {
		return err
	}
	defer st.Close()

	tp, err := telemetry.New(ctx, telemetry.Options{ServiceVersion: version(), InstanceID: instanceID(), Getenv: e.getenv})
	if err != nil {
		return err
	}
	// The audit log: the token endpoint writes its decisions to it; it is
	// also a span processor, for administrative changes and key rotations.
	var audit *auditlog.Log
	if path := cfg.AuditFile(); path != "" {
		if audit, err = auditlog.Open(path, e.now); err != nil {
			tp.Shutdown(ctx)
			return fmt.Errorf("audit.file: %w", err)
		}
		tp.RegisterSpanProcessor(audit.Processor(auditEvent))
		if err := audit.Instrument(log, tp.Meters.Meter("mcpsts")); err != nil {
			tp.Shutdown(ctx)
			return err
		}
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			log.Warn("telemetry shutdown", "error", err)
		}
		if audit != nil {
			if err := audit.Close(); err != nil {
				log.Error("audit log", "error", err)
			}
		}
	}()

	// Trust maps: the first version must compile; later ones replace it
	// only when they do. --dev reads <data>/trustmaps.
	mapPaths := cfg.TrustMaps.Paths
	if f.dev {
		dir := filepath.Join(cfg.DataDir, "trustmaps")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("data directory %s: %w", cfg.DataDir, err)
		}
		mapPaths = []string{dir}
	}
	// Maps come from the files and from the store (the admin API's).
	mapSource := trustmaps.Sources{mapfiles.Files(mapPaths), trustmaps.RepositorySource{Repo: st}}
	policy, err := trustmaps.NewPolicy(ctx, mapSource, log, tp.Meters.Meter("mcpsts"))
	if err != nil {
		return err
	}

	minVersion, _ := tlsserver.ParseMinVersion(cfg.TLS.MinVersion) // validated
	var ln net.Listener
	if e.listener != nil {
		ln = e.listener(cfg.Listen)
	}
	srv, err := tlsserver.Listen(tlsserver.Config{
		Addr:     cfg.Listen,
		Listener: ln,
		TLS:      tlsserver.TLSConfig(cert, minVersion),
		Limits:   cfg.ServerLimits(),
		Log:      log,
	})
	if err != nil {
		return err
	}
	issuerURL := cfg.Issuer
	if f.dev {
		issuerURL = devIssuer(srv.Addr())
	}
	paths, err := exchange.PathsFor(issuerURL)
	if err != nil {
		srv.Close()
		return err
	}
	// Trusted issuers: a provider whose keys cannot load now is retried in
	// the background and does not stop the server. Workload tokens must be
	// addressed to this broker: its issuer or token endpoint by default.
	audiences := cfg.Audiences
	if len(audiences) == 0 {
		audiences = []string{issuerURL, paths.Origin + paths.Token}
	}
	oidcVerifier, verifier, providers, err := newOIDC(cfg, audiences, st, st.FederationProviders(), e.now, log, tp.Meters.Meter("mcpsts"))
	if err != nil {
		srv.Close()
		return err
	}
	svidVerifier, spiffeSet, bundleRunners, err := newSPIFFE(ctx, cfg, audiences, e.now, log, tp.Meters.Meter("mcpsts"))
	if err != nil {
		srv.Close()
		return err
	}
	aws := &dynamicAWS{audiences: audiences, replay: st, now: e.now}
	if cfg.AWS.Enabled {
		if err := aws.set(&cfg.AWS); err != nil {
			srv.Close()
			return fmt.Errorf("aws.sts_ca_file: %w", err)
		}
	}
	// Store providers of every type are reloaded together.
	oidcVerifier.spiffe, oidcVerifier.aws = spiffeSet, aws
	// JWTs go to OIDC by issuer, JWT-SVIDs to SPIFFE by trust domain;
	// single-use OIDC providers keep their replay claim.
	router := attest.JWTRouter{OIDC: singleUseTruster{verifier, oidcVerifier}, SPIFFE: svidVerifier}
	attestors := map[string]attest.Attestor{
		exchange.TokenTypeJWT: router, exchange.TokenTypeIDToken: verifier, exchange.GrantJWTBearer: router,
		exchange.EvidenceTLSClient: svidVerifier, awsattest.TokenType: aws,
	}
	iss, err := newIssuer(ctx, issuerSetup{cfg: cfg, dev: f.dev, url: issuerURL, store: st, env: e, log: log, tracer: tp.Tracer("mcpsts")})
	if err == nil {
		err = iss.Start(ctx)
	}
	if err == nil {
		err = keyAgeGauge(tp.Meters.Meter("mcpsts"), iss)
	}
	var adminAuth admin.Authorizer
	if err == nil {
		adminAuth, err = adminAuthorizer(cfg, issuerURL, iss)
	}
	var clients *storeClients
	if err == nil {
		clients, err = newStoreClients(ctx, st.Clients(), log)
	}
	// Token requests are spans (a server span and one per step) where they
	// can be seen: with an exporter. The endpoint writes its decisions to
	// the audit log itself, so without one it records no spans at all.
	var tokenTracer trace.Tracer
	if tp.Exported {
		tokenTracer = tp.Tracer("mcpsts")
	}
	var decisions exchange.DecisionLog
	if audit != nil {
		decisions = audit
	}
	var h http.Handler
	if err == nil {
		token := exchange.NewHandler(exchange.Config{
			Audit:     decisions,
			Clients:   clients,
			Self:      []string{strings.TrimSuffix(issuerURL, "/")},
			Attestors: attestors,
			Decider:   policy, Minter: iss, Tokens: iss, Consents: st, Tracer: tokenTracer, Meter: tp.Meters.Meter("mcpsts"), Log: log, Clock: e.now,
			DefaultTTL:  cfg.Tokens.DefaultTTL,
			PerIdentity: exchange.RateLimit(cfg.Limits.PerIdentity),
			PerClient:   exchange.RateLimit(cfg.Limits.PerClient),
			PerSource:   exchange.RateLimit(cfg.Limits.PerSource),
		})
		h, err = routes(routeConfig{issuer: issuerURL, store: st, iss: iss, token: token,
			admin: admin.Handler(admin.Config{Repo: st, Policy: policy, Source: mapSource, Consents: st, Auth: adminAuth, Metrics: tp.Scrape, Log: log, Clock: e.now,
				Providers: providerDocuments(st.FederationProviders(), cfg), Clients: clientDocuments(st.Clients())}),
			signingAlgs: providerAlgorithms(providers), tlsClientAuth: true, log: log, traces: tp, meters: tp.Meters})
	}
	if err != nil {
		srv.Close()
		return err
	}
	if f.dev {
		printDevBanner(stdout, issuerURL, srv.Addr(), caPath, cfg.DataDir, adminCert)
	}
	log.Info("mcpsts serving", "addr", srv.Addr().String(), "issuer", issuerURL, "store", st.Dialect(),
		"tracing", tp.Exporter, "version", version())

	go st.RunJanitor(ctx, time.Minute, log)
	go policy.Run(ctx, cfg.TrustMaps.ReloadInterval)
	go oidcVerifier.Run(ctx, cfg.TrustMaps.ReloadInterval)
	go clients.Run(ctx, cfg.TrustMaps.ReloadInterval)
	go iss.Run(ctx)
	for _, p := range providers {
		log.Info("trusting provider", "provider", p.Name(), "issuer", p.Issuer())
		go p.Run(ctx)
	}
	for _, run := range bundleRunners {
		go run(ctx)
	}
	if err := srv.Serve(ctx, h); err != nil {
		return err
	}
	log.Info("mcpsts stopped")
	return nil
}

// keyAgeGauge reports the age of the signing key in force.
func keyAgeGauge(m metric.Meter, iss *issuer.Issuer) error {
	age, err := m.Float64ObservableGauge("mcpsts.issuer.key.age", metric.WithUnit("s"),
		metric.WithDescription("how long ago the active signing key was made"))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		keys, err := iss.Keys(ctx)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k.State == issuer.StateActive {
				o.ObserveFloat64(age, time.Since(k.CreatedAt).Seconds(), metric.WithAttributes(attribute.String("kid", k.ID)))
			}
		}
		return nil
	}, age)
	return err
}

// auditEvent says which spans are audit events, and names them:
// administrative changes, refused administrative requests and key
// rotations. (The token endpoint writes its decisions itself.)
func auditEvent(s sdktrace.ReadOnlySpan) (string, bool) {
	var op, result string
	for _, kv := range s.Attributes() {
		switch kv.Key {
		case admin.AttrOperation:
			op = kv.Value.AsString()
		case admin.AttrResult:
			result = kv.Value.AsString()
		}
	}
	switch {
	case op == issuer.OperationRotate:
		return "keys.rotate", true
	case op != "" && (admin.IsChange(op) || result == "unauthenticated" || result == "forbidden"):
		return "admin." + op, true
	}
	return "", false
}

// routeConfig is what routes mounts.
type routeConfig struct {
	issuer        string
	store         *store.Store
	iss           *issuer.Issuer
	token         http.Handler // has its own server span
	admin         http.Handler
	signingAlgs   []string // of client assertions (private_key_jwt)
	tlsClientAuth bool
	log           *slog.Logger
	traces        trace.TracerProvider
	meters        metric.MeterProvider
}

// routes mounts every handler of the server under the issuer's paths. Each
// request is a server span that continues the caller's traceparent (the
// token endpoint makes its own, with the decision's attributes).
func routes(rc routeConfig) (http.Handler, error) {
	issuerURL, signingAlgs, tlsClientAuth, log, st, iss := rc.issuer, rc.signingAlgs, rc.tlsClientAuth, rc.log, rc.store, rc.iss
	paths, err := exchange.PathsFor(issuerURL)
	if err != nil {
		return nil, err
	}
	authMethods := []string{"none"}
	if len(signingAlgs) > 0 { // RFC 8414: private_key_jwt comes with its algorithms
		authMethods = append(authMethods, "private_key_jwt")
	}
	if tlsClientAuth {
		authMethods = append(authMethods, "tls_client_auth")
	}
	metadata, err := exchange.MetadataHandler(exchange.Metadata{
		Issuer:                            issuerURL,
		JWKSURI:                           paths.Origin + paths.JWKS,
		TokenEndpoint:                     paths.Origin + paths.Token,
		AuthorizationEndpoint:             paths.Origin + paths.Authorize,
		GrantTypesSupported:               []string{exchange.GrantTokenExchange, exchange.GrantJWTBearer, exchange.GrantClientCreds},
		TokenEndpointAuthMethodsSupported: authMethods,
		// private_key_jwt assertions are provider-signed workload JWTs.
		TokenEndpointAuthSigningAlgValuesSupported: signingAlgs,
		TLSClientCertificateBoundAccessTokens:      true, // require_binding: mtls
	})
	if err != nil {
		return nil, err
	}
	if rc.traces == nil {
		rc.traces = tracenoop.NewTracerProvider()
	}
	if rc.meters == nil {
		rc.meters = metricnoop.NewMeterProvider()
	}
	span := func(name string, h http.Handler) http.Handler {
		return otelhttp.NewHandler(h, name, otelhttp.WithTracerProvider(rc.traces), otelhttp.WithMeterProvider(rc.meters),
			otelhttp.WithPropagators(propagation.TraceContext{}))
	}
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", span("healthz", health.Live()))
	mux.Handle("GET /readyz", span("readyz", health.Ready(2*time.Second, log,
		health.Check{Name: "store", Check: st.Ping},
		health.Check{Name: "signing_keys", Check: iss.Ready},
	)))
	mux.Handle("GET "+paths.JWKS, span("jwks", iss.JWKSHandler()))
	mux.Handle(paths.Token, rc.token) // every method: others get a JSON 405
	mux.Handle(paths.Authorize, span("authorize", exchange.AuthorizeHandler()))
	mux.Handle("GET "+paths.OAuth, span("metadata", metadata))
	mux.Handle("GET "+paths.OIDC, span("metadata", metadata))
	if rc.admin != nil {
		mux.Handle("/admin/v1/", span("admin", rc.admin))
	}
	mux.Handle("/", span("not_found", http.NotFoundHandler()))
	return mux, nil
}

// pinnedClient is an HTTP client that trusts only the CA in caFile, or the
// system roots when caFile is empty.
func pinnedClient(caFile string) (*http.Client, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	if caFile == "" {
		return c, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates", caFile)
	}
	c.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	return c, nil
}

// singleUseTruster is the single-use-wrapped OIDC attestor with its
// verifier's issuer list, for attest.JWTRouter.
type singleUseTruster struct {
	attest.Attestor
	v interface{ Trusts(iss string) bool }
}

func (s singleUseTruster) Trusts(iss string) bool { return s.v.Trusts(iss) }

// providerAlgorithms lists the algorithms the trusted providers sign with,
// in a fixed order: those accepted for client assertions.
func providerAlgorithms(providers []*federation.Provider) []string {
	seen := map[string]bool{}
	for _, p := range providers {
		for _, a := range p.Algorithms() {
			seen[a] = true
		}
	}
	var out []string
	for _, a := range federation.SupportedAlgorithms() {
		if seen[a] {
			out = append(out, a)
		}
	}
	return out
}

// adminAuthorizer accepts broker tokens for the admin audience with the
// admin scope and, when configured, administrators' client certificates.
func adminAuthorizer(cfg *config.Config, issuerURL string, iss *issuer.Issuer) (admin.Authorizer, error) {
	audience := cfg.Admin.Audience
	if audience == "" {
		audience = strings.TrimSuffix(issuerURL, "/") + "/admin"
	}
	auth := admin.AnyOf{admin.TokenAuth{Verifier: iss, Audience: audience}}
	if f := cfg.Admin.ClientCAFile; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("admin.client_ca_file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("admin.client_ca_file %s: no PEM certificates", f)
		}
		auth = append(auth, admin.CertAuth{Roots: roots, Names: cfg.Admin.ClientNames})
	}
	return auth, nil
}

// ensureDataDir creates dir (0700) if it is missing and checks that it can
// be written. created reports whether this call made it.
func ensureDataDir(dir string) (created bool, err error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, fmt.Errorf("data directory %s: cannot create: %w", dir, unwrapPath(err))
		}
		created = true
	case err != nil:
		return false, fmt.Errorf("data directory %s: %w", dir, unwrapPath(err))
	case !fi.IsDir():
		return false, fmt.Errorf("data directory %s: not a directory", dir)
	}
	probe, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		if created {
			os.RemoveAll(dir)
		}
		return false, fmt.Errorf("data directory %s: not writable: %w", dir, unwrapPath(err))
	}
	probe.Close()
	os.Remove(probe.Name())
	return created, nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// devIssuer is the issuer URL of a dev server bound to addr: its own
// address, or localhost when it listens on every interface.
func devIssuer(addr net.Addr) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return "https://" + net.JoinHostPort(host, port)
}

func printDevBanner(w io.Writer, issuer string, addr net.Addr, caPath, dataDir, adminCert string) {
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	absCA, absData, absAdmin := abs(caPath), abs(dataDir), abs(adminCert)
	absAdminKey := strings.TrimSuffix(absAdmin, devpki.AdminCertFile) + devpki.AdminKeyFile
	fmt.Fprintf(w, `mcpsts is serving in development mode (embedded SQLite, local CA)
  issuer:    %s
  listening: %s
  trust CA:  %s
  data:      %s
  admin:     client certificate %s, key %s
  try:       curl --cacert %s %s/.well-known/oauth-authorization-server
`, issuer, addr, absCA, absData, absAdmin, absAdminKey, absCA, issuer)
}

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level)) // validated; "" is info
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// instanceID names this process for tracing: the host name and a random
// suffix, so that replicas on one host differ.
func instanceID() string {
	host, _ := os.Hostname()
	var b [4]byte
	rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}
