// Package server assembles mcpsts: the store, the issuer and its keys, the
// trusted providers with their hot-reloaded sets, the attestors, the
// trust-map policy, the token endpoint, the admin API, telemetry, the audit
// log and the routes. New builds it and binds its address; Run serves until
// its context ends. The command line (cmd/mcpsts) only loads the
// configuration, calls these and prints.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/mcpsts/mcpsts/attest"
	awsattest "github.com/mcpsts/mcpsts/attest/aws"
	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/exchange/authorize"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/internal/admin"
	"github.com/mcpsts/mcpsts/internal/auditlog"
	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/internal/devpki"
	"github.com/mcpsts/mcpsts/internal/geoip"
	"github.com/mcpsts/mcpsts/internal/mapfiles"
	"github.com/mcpsts/mcpsts/internal/redislimits"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/internal/telemetry"
	"github.com/mcpsts/mcpsts/internal/tlsserver"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/impact"
)

// Options are what the command line adds to the configuration.
type Options struct {
	// Dev is development mode: a local CA and server certificate, a
	// development administrator's client certificate, a generated KEK,
	// trust maps in <data_dir>/trustmaps, and the issuer named by the
	// bound address.
	Dev bool
	// Getenv reads the environment (MCPSTS_KEK, OTEL_*); nil: os.Getenv.
	Getenv func(string) string
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Listener, when set, is served instead of binding the configuration's
	// listen address.
	Listener net.Listener
	// Log receives the server's log; nil: discarded.
	Log *slog.Logger
	// Version is reported in telemetry and the start-up log line.
	Version string
	// ClientDocuments configures the fetches of client ID metadata
	// documents; tests let them reach their loopback servers.
	ClientDocuments exchange.ClientMetadataOptions
}

// Server is an assembled mcpsts bound to its address. It is not safe to
// Run twice.
type Server struct {
	// Issuer is the issuer URL (in Dev, the bound address's).
	Issuer string
	// Addr is the bound address.
	Addr net.Addr
	// CAPath and AdminCert are, in Dev, the local CA to trust and the
	// development administrator's client certificate.
	CAPath, AdminCert string

	cfg           *config.Config
	log           *slog.Logger
	version       string
	srv           *tlsserver.Server
	handler       http.Handler
	st            *store.Store
	redis         *redislimits.Limits // shared rate limits, when limits.store is a Redis URL
	tp            *telemetry.Provider
	audit         *auditlog.Log
	refusals      *auditlog.Aggregator // writes to audit: repeated refusals of anonymous requests counted
	now           func() time.Time
	policy        *trustmaps.Policy
	oidc          *dynamicOIDC
	clients       *storeClients
	iss           *issuer.Issuer
	providers     []*federation.Provider
	bundleRunners []func(context.Context)
	geo           *geoip.DB // nil: no geolocation
	posture       *dynamicPosture
}

// New builds the server from cfg and binds its address. On an error
// nothing is left open, and a data directory it created is removed again.
func New(ctx context.Context, cfg *config.Config, opts Options) (_ *Server, err error) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	log := opts.Log
	s := &Server{cfg: cfg, log: log, version: opts.Version, now: opts.Now}
	defer func() {
		if err != nil {
			s.close()
		}
	}()

	// Nothing half-created: a data directory this call made is removed
	// again if start-up fails.
	if opts.Dev || cfg.Store == "" {
		var created bool
		if created, err = ensureDataDir(cfg.DataDir); err != nil {
			return nil, err
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
	if opts.Dev {
		pki, err := devpki.Ensure(cfg.DataDir, opts.Now())
		if err != nil {
			return nil, err
		}
		cert, s.CAPath = pki.Certificate, pki.CAPath
		// The development administrator authenticates to the admin API
		// with a client certificate from the local CA.
		if s.AdminCert, _, err = devpki.EnsureAdmin(cfg.DataDir, opts.Now()); err != nil {
			return nil, err
		}
		cfg.Admin.ClientCAFile, cfg.Admin.ClientNames = pki.CAPath, []string{devpki.AdminName}
		if err := devIdentity(cfg); err != nil {
			return nil, err
		}
	} else {
		var selfSigned bool
		cert, selfSigned, err = tlsserver.LoadCertificate(cfg.TLS.CertFile, cfg.TLS.KeyFile, opts.Now(), cfg.TLS.AllowSelfSigned)
		if err != nil {
			return nil, err
		}
		if selfSigned {
			log.Warn("serving a self-signed certificate (tls.allow_self_signed: true): clients must pin it", "cert_file", cfg.TLS.CertFile)
		}
	}

	if s.st, err = store.Open(ctx, cfg.StoreURL()); err != nil {
		return nil, err
	}
	st := s.st
	if s.tp, err = telemetry.New(ctx, telemetry.Options{ServiceVersion: opts.Version, InstanceID: instanceID(), Getenv: opts.Getenv}); err != nil {
		return nil, err
	}
	tp := s.tp
	meter := tp.Meters.Meter("mcpsts")
	// The audit log: the token endpoint writes its decisions to it; it is
	// also a span processor, for administrative changes and key rotations.
	if path := cfg.AuditFile(); path != "" {
		if s.audit, err = auditlog.OpenWith(path, cfg.AuditOptions(opts.Now, log)); err != nil {
			return nil, fmt.Errorf("audit.file: %w", err)
		}
		s.refusals = auditlog.NewAggregator(s.audit, auditlog.AggregatorOptions{Interval: cfg.Audit.RepeatInterval, Log: log})
		tp.RegisterSpanProcessor(s.audit.Processor(auditEvent))
		if err := s.audit.Instrument(log, meter); err != nil {
			return nil, err
		}
	}

	// Trust maps: the first version must compile; later ones replace it
	// only when they do. Dev reads <data>/trustmaps.
	mapPaths := cfg.TrustMaps.Paths
	if opts.Dev {
		dir, err := devTrustMaps(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		mapPaths = []string{dir}
	}
	// Maps come from the files and from the store (the admin API's).
	mapSource := trustmaps.Sources{mapfiles.Files(mapPaths), trustmaps.RepositorySource{Repo: st}}
	var mapOpts trustmaps.Options
	// A map naming a provider defined nowhere (a typo) compiles and never
	// matches: each reload logs it.
	mapOpts.Providers = func(ctx context.Context) ([]string, error) {
		names := cfg.ProviderNames()
		if opts.Dev {
			names = append(names, DevLoginProvider)
		}
		recs, err := st.FederationProviders().Records(ctx)
		for _, r := range recs {
			names = append(names, r.ID)
		}
		return names, err
	}
	if cfg.GeoIP.Database != "" {
		if s.geo, err = geoip.Open(cfg.GeoIP.Database, log); err != nil {
			return nil, err
		}
		mapOpts.Places = s.geo
	}
	if s.policy, err = trustmaps.NewPolicyWith(ctx, mapSource, mapOpts, log, meter); err != nil {
		return nil, err
	}

	minVersion, _ := tlsserver.ParseMinVersion(cfg.TLS.MinVersion) // validated
	s.srv, err = tlsserver.Listen(tlsserver.Config{
		Addr:     cfg.Listen,
		Listener: opts.Listener,
		TLS:      tlsserver.TLSConfig(cert, minVersion),
		Limits:   cfg.ServerLimits(),
		Log:      log,
	})
	if err != nil {
		return nil, err
	}
	s.Addr = s.srv.Addr()
	s.Issuer = cfg.Issuer
	if opts.Dev {
		s.Issuer = devIssuer(s.Addr)
	}
	issuerURL := s.Issuer
	if opts.Dev {
		// mcpsts token --dev finds the running dev server here.
		if err := os.WriteFile(filepath.Join(cfg.DataDir, devpki.IssuerFile), []byte(issuerURL+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	paths, err := exchange.PathsFor(issuerURL)
	if err != nil {
		return nil, err
	}
	// Trusted issuers: a provider whose keys cannot load now is retried in
	// the background and does not stop the server. Workload tokens must be
	// addressed to this broker: its issuer or token endpoint by default.
	audiences := cfg.Audiences
	if len(audiences) == 0 {
		audiences = []string{issuerURL, paths.Origin + paths.Token}
	}
	oidcVerifier, verifier, providers, err := newOIDC(cfg, audiences, st, st.FederationProviders(), opts.Now, log, meter)
	if err != nil {
		return nil, err
	}
	s.oidc, s.providers = oidcVerifier, providers
	svidVerifier, spiffeSet, bundleRunners, err := newSPIFFE(ctx, cfg, audiences, opts.Now, log, meter)
	if err != nil {
		return nil, err
	}
	s.bundleRunners = bundleRunners
	if s.posture, err = newPosture(cfg, st.PostureSources(), opts.Now, log, meter); err != nil {
		return nil, err
	}
	aws := &dynamicAWS{audiences: audiences, replay: st, now: opts.Now}
	if cfg.AWS.Enabled {
		if err := aws.set(&cfg.AWS); err != nil {
			return nil, fmt.Errorf("aws.sts_ca_file: %w", err)
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
	if s.iss, err = NewIssuer(ctx, IssuerSetup{Config: cfg, Dev: opts.Dev, URL: issuerURL, Store: st, Getenv: opts.Getenv, Now: opts.Now, Log: log, Tracer: tp.Tracer("mcpsts")}); err != nil {
		return nil, err
	}
	iss := s.iss
	if err := iss.Start(ctx); err != nil {
		return nil, err
	}
	if err := keyAgeGauge(meter, iss); err != nil {
		return nil, err
	}
	// One acceptance of our own tokens for every place that takes one
	// (admin API, introspection, delegation), reading the revocation list
	// the replicas share; revocations made here go through it.
	accept, err := exchange.NewAcceptor(exchange.AcceptorConfig{Tokens: iss, Revocations: st, SingleUse: st,
		CacheFor: cfg.Tokens.RevocationCacheFor, Clock: opts.Now})
	if err != nil {
		return nil, err
	}
	adminAuth, err := adminAuthorizer(cfg, issuerURL, accept)
	if err != nil {
		return nil, err
	}
	if s.clients, err = newStoreClients(ctx, st.Clients(), log, opts.Now, cfg.Registration.UnusedExpiry); err != nil {
		return nil, err
	}
	if opts.Dev {
		if err := devClient(ctx, s.clients); err != nil {
			return nil, fmt.Errorf("registering the demo client: %w", err)
		}
	}
	// Token requests are spans (a server span and one per step) where they
	// can be seen: with an exporter. The endpoint writes its decisions to
	// the audit log itself, so without one it records no spans at all.
	var tokenTracer trace.Tracer
	if tp.Exported {
		tokenTracer = tp.Tracer("mcpsts")
	}
	var decisions exchange.DecisionLog
	if s.audit != nil {
		decisions = s.refusals
	}
	// Browser flows, when people can sign in (a user provider's login, or
	// the development login).
	login, err := newLogin(ctx, cfg, opts.Dev, paths.Base, paths.Origin+paths.Base+authorize.PathCallback, providers, opts.Getenv, opts.Now)
	if err != nil {
		return nil, err
	}
	if opts.Dev && len(cfg.Authorization.ScopeDescriptions) == 0 {
		cfg.Authorization.ScopeDescriptions = map[string]string{
			"files:read": "Read the files of the demo MCP server", "files:write": "Write files on the demo MCP server"}
		cfg.Authorization.ScopeDescriptionsByLanguage = map[string]map[string]string{"fr": {
			"files:read": "Lire les fichiers du serveur MCP de démonstration", "files:write": "Écrire des fichiers sur le serveur MCP de démonstration"}}
	}
	var browser *authorize.Endpoint
	var codes authorize.Store
	var docs *exchange.ClientMetadataDocuments
	var register http.Handler
	if login != nil {
		codes = st
		if cimd := cfg.Authorization.ClientMetadataDocuments; cimd == nil || *cimd {
			docs = exchange.NewClientMetadataDocuments(opts.ClientDocuments)
		}
		var flowsAudit authorize.DecisionLog
		if s.audit != nil {
			flowsAudit = s.refusals
		}
		browser, err = authorize.New(authorize.Config{
			Issuer: issuerURL, Base: paths.Base, Clients: exchange.BrowserClients{Registry: s.clients, Documents: docs},
			Decider: s.policy, Consents: st, Codes: st, Flows: st, Login: login,
			Refresh: true, RefreshTTL: cfg.Authorization.RefreshTTL, ScopeDescriptions: cfg.Authorization.ScopeDescriptions,
			ScopeDescriptionsByLanguage: cfg.Authorization.ScopeDescriptionsByLanguage,
			Remember:                    s.rememberedAttributes,
			Audit:                       flowsAudit, Log: log, Clock: opts.Now,
		})
		if err != nil {
			return nil, err
		}
		if cfg.Registration.Dynamic {
			register = exchange.RegistrationHandler(exchange.RegistrationConfig{Clients: s.clients, Audit: decisions, Log: log, Clock: opts.Now,
				SourcePrefixes: exchange.SourcePrefixes{IPv4: cfg.Limits.SourcePrefixIPv4, IPv6: cfg.Limits.SourcePrefixIPv6},
				Overall:        registrationRate(cfg.Registration), MaxClients: cfg.Registration.MaxClients})
		}
	}
	proofs := &dpop.Verifier{Replay: st, Clock: opts.Now}
	if cfg.DPoP.RequireNonce {
		key, err := st.SharedSecret(ctx, "dpop-nonce")
		if err != nil {
			return nil, err
		}
		proofs.Nonces = dpop.HMACNonces{Key: key, Clock: opts.Now}
	}
	tokenCfg := exchange.Config{
		DPoP: proofs, TokenURL: paths.Origin + paths.Token,
		Authorizations: codes, RefreshTTL: cfg.Authorization.RefreshTTL, RefreshMaxLifetime: cfg.Authorization.RefreshMaxLifetime,
		Audit:            decisions,
		ReplayAttributes: s.replayAttributes,
		Clients:          s.clients,
		Self:             []string{strings.TrimSuffix(issuerURL, "/")},
		Attestors:        attestors,
		Decider:          s.policy, Minter: iss, IDJAGs: iss, Replay: st, Tokens: iss, Acceptor: accept, Revocations: accept, Consents: st, Tracer: tokenTracer, Meter: meter, Log: log, Clock: opts.Now,
		DefaultTTL:     cfg.Tokens.DefaultTTL,
		PerIdentity:    exchange.RateLimit(cfg.Limits.PerIdentity),
		PerClient:      exchange.RateLimit(cfg.Limits.PerClient),
		PerSource:      exchange.RateLimit(cfg.Limits.PerSource),
		SourcePrefixes: exchange.SourcePrefixes{IPv4: cfg.Limits.SourcePrefixIPv4, IPv6: cfg.Limits.SourcePrefixIPv6},
	}
	tokenCfg.Posture = s.posture
	switch {
	case cfg.SharedLimits():
		tokenCfg.SharedLimits = st
	case cfg.RedisLimits():
		if s.redis, err = openRedisLimits(cfg); err != nil {
			return nil, err
		}
		tokenCfg.SharedLimits = s.redis
	}
	token := exchange.NewHandler(tokenCfg)
	// Introspection and revocation: the same credentials, the store's
	// revocation list and single-use claims.
	adminAudience := cfg.Admin.Audience
	if adminAudience == "" {
		adminAudience = strings.TrimSuffix(issuerURL, "/") + "/admin"
	}
	lifecycle := exchange.LifecycleConfig{AdminAudience: adminAudience, AdminScope: admin.Scope, Revocations: accept, SingleUse: st, MaxTTL: cfg.Tokens.MaxTTL}
	for _, c := range cfg.Introspection.Callers {
		lifecycle.Callers = append(lifecycle.Callers, exchange.IntrospectionCaller(c))
	}
	introspect, revoke := exchange.NewLifecycleHandlers(tokenCfg, lifecycle)
	s.handler, err = routes(routeConfig{issuer: issuerURL, store: st, iss: iss, token: token,
		perSource: exchange.NewSourceLimiter(exchange.RateLimit(cfg.Limits.PerSource),
			exchange.SourcePrefixes{IPv4: cfg.Limits.SourcePrefixIPv4, IPv6: cfg.Limits.SourcePrefixIPv6}, opts.Now),

		admin: admin.Handler(admin.Config{Repo: st, Policy: s.policy, Source: mapSource, Consents: st, Auth: adminAuth, Metrics: tp.Scrape, Log: log, Clock: opts.Now,
			Providers: providerDocuments(st.FederationProviders(), cfg), Clients: clientDocuments(st.Clients(), s.clients.changed),
			PostureSources: postureDocuments(st.PostureSources(), cfg),
			Revocations:    accept, RevokeFor: cfg.Tokens.MaxTTL, AuditFile: cfg.AuditFile()}),
		signingAlgs: providerAlgorithms(providers), tlsClientAuth: true, log: log, traces: tp, meters: tp.Meters,
		browser: browser, register: register, documents: docs != nil, scopes: cfg.Authorization.ScopeDescriptions,
		introspect: introspect, revoke: revoke})
	if err != nil {
		return nil, err
	}
	var proxies []netip.Prefix
	for _, p := range cfg.Server.TrustedProxies {
		pr, _ := config.ParseProxy(p) // validated
		proxies = append(proxies, pr)
	}
	s.handler = forwardedFor(proxies, s.handler)
	return s, nil
}

// Run starts the background work (store janitor, reloads of trust maps,
// providers and clients, key rotation, key-set and bundle refreshes) and
// serves until ctx is done, then shuts down gracefully and closes
// everything.
func (s *Server) Run(ctx context.Context) error {
	defer s.close()
	cfg, log := s.cfg, s.log
	log.Info("mcpsts serving", "addr", s.Addr.String(), "issuer", s.Issuer, "store", s.st.Dialect(),
		"tracing", s.tp.Exporter, "version", s.version)
	go s.st.RunJanitor(ctx, time.Minute, log)
	go s.policy.Run(ctx, cfg.TrustMaps.ReloadInterval)
	go s.oidc.Run(ctx, cfg.TrustMaps.ReloadInterval)
	go s.clients.Run(ctx, cfg.TrustMaps.ReloadInterval)
	go s.iss.Run(ctx)
	if s.refusals != nil {
		go s.refusals.Run(ctx, s.now)
	}
	// The providers' first key sets, before the first request is served
	// (a request arriving now waits in the listen queue rather than being
	// answered 503): at most 3 s; a provider still unreachable then keeps
	// trying in the background and does not stop the server.
	first, cancel := context.WithTimeout(ctx, 3*time.Second)
	var loading sync.WaitGroup
	go s.posture.Run(ctx, cfg.TrustMaps.ReloadInterval)
	keySources := append(slices.Clone(s.providers), s.posture.Keys()...)
	for _, p := range keySources {
		loading.Add(1)
		go func() { defer loading.Done(); p.Refresh(first) }()
	}
	loading.Wait()
	cancel()
	for _, p := range keySources {
		log.Info("trusting provider", "provider", p.Name(), "issuer", p.Issuer())
		go p.Run(ctx)
	}
	if s.geo != nil {
		every := cfg.GeoIP.ReloadInterval
		if every == 0 {
			every = time.Minute
		}
		go s.geo.Run(ctx, every)
	}
	for _, run := range s.bundleRunners {
		go run(ctx)
	}
	srv := s.srv
	s.srv = nil // Serve closes it
	if err := srv.Serve(ctx, s.handler); err != nil {
		return err
	}
	log.Info("mcpsts stopped")
	return nil
}

// close releases what New opened, in reverse order.
func (s *Server) close() {
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
	if s.tp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.tp.Shutdown(ctx); err != nil {
			s.log.Warn("telemetry shutdown", "error", err)
		}
		s.tp = nil
	}
	if s.audit != nil {
		if err := s.refusals.Flush(s.now()); err != nil {
			s.log.Error("audit log: repeated refusals not recorded", "error", err)
		}
		if err := s.audit.Close(); err != nil {
			s.log.Error("audit log", "error", err)
		}
		s.audit = nil
	}
	if s.st != nil {
		s.st.Close()
		s.st = nil
	}
	if s.redis != nil {
		s.redis.Close()
		s.redis = nil
	}
}

// replayAttributes names the identity attributes a decision's record keeps
// for a later replay: audit.replay_attributes, or those the maps read.
func (s *Server) replayAttributes() ([]string, bool) {
	if names := s.cfg.Audit.ReplayAttributes; len(names) > 0 {
		return names, false
	}
	return s.policy.Engine().ReferencedAttributes()
}

// rememberedAttributes are the attributes of a person a browser grant
// keeps for the decisions its redemption and refreshes make again: the
// same as a decision's record keeps.
func (s *Server) rememberedAttributes(attrs map[string]any) map[string]any {
	names, all := s.replayAttributes()
	return impact.Recorded(attrs, names, all)
}

// openRedisLimits connects to the Redis that keeps the replicas' shared
// rate limits, with the password of limits.redis_password_file.
func openRedisLimits(cfg *config.Config) (*redislimits.Limits, error) {
	var o redislimits.Options
	if f := cfg.Limits.RedisPasswordFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("limits.redis_password_file: %w", err)
		}
		o.Password = strings.TrimRight(string(b), "\r\n")
	}
	return redislimits.New(cfg.Limits.Store, o)
}

// instanceID names this process for tracing: the host name and a random
// suffix, so that replicas on one host differ.
func instanceID() string {
	host, _ := os.Hostname()
	var b [4]byte
	rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}
