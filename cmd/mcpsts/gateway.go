package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.yaml.in/yaml/v3"

	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/exchange/client"
	"github.com/mcpsts/mcpsts/gateway"
	"github.com/mcpsts/mcpsts/internal/auditlog"
	"github.com/mcpsts/mcpsts/internal/auditvalue"
	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/internal/strictyaml"
	"github.com/mcpsts/mcpsts/internal/telemetry"
	"github.com/mcpsts/mcpsts/internal/tlsserver"
	"github.com/mcpsts/mcpsts/resource"
	"github.com/mcpsts/mcpsts/toolpolicy"
)

// gatewayConfig is the gateway's configuration file; flags override it.
type gatewayConfig struct {
	Listen     string `yaml:"listen"`
	Resource   string `yaml:"resource"`    // the public MCP URL
	Broker     string `yaml:"broker"`      // the broker's issuer URL
	BrokerCA   string `yaml:"broker_ca"`   // a CA file for the broker (default: system roots)
	Upstream   string `yaml:"upstream"`    // http://127.0.0.1:PORT/mcp or unix:///path.sock
	UpstreamCA string `yaml:"upstream_ca"` // https upstreams only: the CA that signs its certificate
	ToolScopes string `yaml:"tool_scopes"` // a JSON or YAML file: tool name → scopes, reloaded when it changes
	ToolPolicy string `yaml:"tool_policy"` // a tool policy file (docs/tool-policies.md) with the resource URL's policy, reloaded when it changes
	AuditLog   string `yaml:"audit_log"`   // a hash-chained audit log of the requests refused at the edge
	// Audit rotates that log and sums up repeated refusals, as the
	// broker's audit section does (max_size, max_age, max_files,
	// compress, repeat_interval; the same defaults).
	Audit config.Audit `yaml:"audit"`
	// UpstreamAudience: send the upstream a token for this audience,
	// obtained by delegation with the gateway's own credential
	// (TokenSource, as mcpsts token --source), instead of X-MCPSTS-* headers.
	UpstreamAudience string `yaml:"upstream_audience"`
	TokenSource      string `yaml:"token_source"`
	// DPoP is off, accept (default) or require.
	DPoP string `yaml:"dpop"`
	// IntrospectionSource is the gateway's own credential (as mcpsts token
	// --source) with which it asks the broker about every token: revoked
	// tokens are then refused, single-use tokens taken once. Required
	// when a trust map for the gateway's audience is single_use.
	IntrospectionSource string `yaml:"introspection_source"`
	// UpstreamOwnsSessions forwards unknown Mcp-Session-Id values for the
	// upstream to check (default: 404 at the gateway).
	UpstreamOwnsSessions bool `yaml:"upstream_owns_sessions"`
	// PerSource limits the requests of one source address (an IPv6 /64)
	// before anything is read (default 100 a second, 200 at once).
	PerSource struct {
		Rate  float64 `yaml:"rate"`
		Burst int     `yaml:"burst"`
	} `yaml:"per_source"`
	// AllowedHosts are the Host values requests may carry (default: the
	// resource URL's host): DNS rebinding is refused with 421.
	AllowedHosts []string `yaml:"allowed_hosts"`
	TLS          struct {
		Cert string `yaml:"cert_file"`
		Key  string `yaml:"key_file"`
	} `yaml:"tls"`
}

func newGatewayCommand(e env) *cobra.Command {
	var file string
	var flags gatewayConfig
	cmd := &cobra.Command{
		Use:   "gateway [--config FILE] [--listen ADDR --resource URL --broker URL --upstream URL --cert FILE --key FILE]",
		Short: "Protect any MCP server: an HTTPS reverse proxy that verifies mcpsts tokens and never forwards one",
		Long: `Serve the MCP Streamable HTTP transport at --resource, verifying every request
with mcpsts tokens exactly as the resource package does for Go servers (audience,
signature, times, binding, scopes per tool, Origin, no token in the query), and
forward it to --upstream without the Authorization and DPoP headers: the upstream
reads the caller from X-MCPSTS-Subject, X-MCPSTS-Client-ID, X-MCPSTS-Scopes and
X-MCPSTS-Actor, which the gateway sets on every request. The upstream must be a
loopback address or a Unix socket (unix:///path.sock) unless --upstream-ca
trusts an https one: the caller's identity travels in those headers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := gatewayConfig{Listen: "127.0.0.1:8444", Audit: config.DefaultAudit()}
			cfg.PerSource.Rate, cfg.PerSource.Burst = 100, 200
			if file != "" {
				data, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				docs, err := strictyaml.Documents(data)
				if err != nil || len(docs) != 1 {
					return fmt.Errorf("%s: want one YAML document: %v", file, err)
				}
				_, problems := strictyaml.Decode(docs[0], "", &cfg)
				var errs []error
				for _, p := range problems {
					errs = append(errs, fmt.Errorf("%s:%d: %s: %s", file, p.Line, p.Path, p.Msg))
				}
				for _, p := range cfg.Audit.RotationProblems() {
					errs = append(errs, fmt.Errorf("%s: audit.%s", file, p))
				}
				if len(errs) > 0 {
					return errors.Join(errs...)
				}
			}
			merge(&cfg, flags)
			return runGateway(cmd.Context(), cfg, e, cmd)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&file, "config", "", "YAML configuration `file`")
	fl.StringVar(&flags.Listen, "listen", "", "address to serve HTTPS on (default 127.0.0.1:8444)")
	fl.StringVar(&flags.Resource, "resource", "", "the public MCP `URL` (every token's audience)")
	fl.StringVar(&flags.Broker, "broker", "", "the mcpsts issuer `URL`")
	fl.StringVar(&flags.BrokerCA, "broker-ca", "", "CA `file` for the broker (default: the system roots)")
	fl.StringVar(&flags.Upstream, "upstream", "", "the MCP server: http://127.0.0.1:PORT/mcp or unix:///path.sock")
	fl.StringVar(&flags.UpstreamCA, "upstream-ca", "", "CA `file` of an https upstream")
	fl.StringVar(&flags.ToolScopes, "tool-scopes", "", "JSON or YAML `file`: tool name → the scopes it needs")
	fl.StringVar(&flags.ToolPolicy, "tool-policy", "", "tool policy `file` (docs/tool-policies.md) holding --resource's policy: each tools/call decided on its arguments and caller")
	fl.StringVar(&flags.AuditLog, "audit-log", "", "`file` of the audit log of refused requests (hash-chained, as the broker's)")
	fl.StringVar(&flags.UpstreamAudience, "upstream-audience", "", "send the upstream a token for this `URI` (delegation) instead of the X-MCPSTS-* headers")
	fl.StringVar(&flags.TokenSource, "token-source", "", "the gateway's own credential for --upstream-audience, as mcpsts token --source (k8s, spiffe, file:PATH…)")
	fl.StringVar(&flags.DPoP, "dpop", "", "DPoP-bound tokens: off, accept (default) or require")
	fl.StringVar(&flags.IntrospectionSource, "introspection-source", "", "the gateway's own credential (as mcpsts token --source) to ask the broker whether each token is revoked or used (single use)")
	fl.StringVar(&flags.TLS.Cert, "cert", "", "TLS certificate `file`")
	fl.StringVar(&flags.TLS.Key, "key", "", "TLS key `file`")
	fl.StringSliceVar(&flags.AllowedHosts, "allowed-host", nil, "a `host[:port]` requests may name in Host (repeatable; default: the --resource URL's)")
	fl.BoolVar(&flags.UpstreamOwnsSessions, "upstream-owns-sessions", false, "forward an Mcp-Session-Id the gateway does not know (after its restart) for the upstream to check against X-MCPSTS-Subject; default: 404")
	return cmd
}

func merge(cfg *gatewayConfig, f gatewayConfig) {
	for _, p := range []struct {
		dst *string
		v   string
	}{{&cfg.Listen, f.Listen}, {&cfg.Resource, f.Resource}, {&cfg.Broker, f.Broker},
		{&cfg.BrokerCA, f.BrokerCA}, {&cfg.Upstream, f.Upstream}, {&cfg.UpstreamCA, f.UpstreamCA}, {&cfg.ToolScopes, f.ToolScopes}, {&cfg.ToolPolicy, f.ToolPolicy}, {&cfg.AuditLog, f.AuditLog},
		{&cfg.UpstreamAudience, f.UpstreamAudience}, {&cfg.TokenSource, f.TokenSource}, {&cfg.DPoP, f.DPoP}, {&cfg.IntrospectionSource, f.IntrospectionSource},
		{&cfg.TLS.Cert, f.TLS.Cert}, {&cfg.TLS.Key, f.TLS.Key}} {
		if p.v != "" {
			*p.dst = p.v
		}
	}
	cfg.UpstreamOwnsSessions = cfg.UpstreamOwnsSessions || f.UpstreamOwnsSessions
	if len(f.AllowedHosts) > 0 {
		cfg.AllowedHosts = f.AllowedHosts
	}
}

func runGateway(ctx context.Context, cfg gatewayConfig, e env, cmd *cobra.Command) error {
	var missing []error
	for name, v := range map[string]string{"resource": cfg.Resource, "broker": cfg.Broker, "upstream": cfg.Upstream, "tls.cert_file (--cert)": cfg.TLS.Cert, "tls.key_file (--key)": cfg.TLS.Key} {
		if v == "" {
			missing = append(missing, fmt.Errorf("%s: required", name))
		}
	}
	if err := errors.Join(missing...); err != nil {
		return err
	}
	pool := func(file string) (*x509.CertPool, error) {
		if file == "" {
			return nil, nil
		}
		pem, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", file)
		}
		return p, nil
	}
	brokerRoots, err := pool(cfg.BrokerCA)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
	brokerTransport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: brokerRoots, MinVersion: tls.VersionTLS12}}
	if err := brokerTrusted(ctx, brokerTransport, cfg.Broker); err != nil {
		return &exitError{exitConfig, err}
	}
	var delegator resource.Delegator
	if cfg.UpstreamAudience != "" {
		if cfg.TokenSource == "" {
			return errors.New("upstream_audience (--upstream-audience) needs token_source (--token-source): the gateway's own credential for the delegation")
		}
		src, err := client.SourceByName(cfg.TokenSource, e.getenv)
		if err != nil {
			return fmt.Errorf("token_source: %w", err)
		}
		if delegator, err = client.New(cfg.Broker, src, client.Options{HTTPClient: &http.Client{Transport: brokerTransport, Timeout: 30 * time.Second}, Clock: e.now}); err != nil {
			return err
		}
	}
	proofs, err := resource.DPoPMode(cfg.DPoP)
	if err != nil {
		return fmt.Errorf("dpop (--dpop): %w", err)
	}
	var introspection *resource.Introspection
	if cfg.IntrospectionSource != "" {
		src, err := client.SourceByName(cfg.IntrospectionSource, e.getenv)
		if err != nil {
			return fmt.Errorf("introspection_source (--introspection-source): %w", err)
		}
		introspection = resource.BrokerIntrospection(cfg.Broker, client.Assertion(src, cfg.Broker))
	}
	// Refusals are written (and logged) once per kind and source an
	// interval, then counted: anyone can send requests the gateway refuses.
	var refusals *auditlog.Aggregator
	if cfg.AuditLog != "" {
		audit, err := auditlog.OpenWith(cfg.AuditLog, cfg.Audit.Options(e.now, log))
		if err != nil {
			return err
		}
		defer audit.Close()
		refusals = auditlog.NewAggregator(audit, auditlog.AggregatorOptions{Interval: cfg.Audit.RepeatInterval, Log: log})
	} else {
		refusals = auditlog.NewAggregator(nil, auditlog.AggregatorOptions{Interval: cfg.Audit.RepeatInterval, Log: log})
	}
	defer func() {
		if err := refusals.Flush(e.now()); err != nil {
			log.Error("audit log: repeated refusals not recorded", "error", err)
		}
	}()
	go refusals.Run(ctx, e.now)
	// Every tool-call decision of the tool policy is an audit line naming
	// the caller, the tool, the rule and the arguments' digest (never the
	// arguments), refusals aggregated as the edge's others are.
	toolDecisions := func(ctx context.Context, c resource.ToolCall, d resource.ToolDecision) {
		attrs := []attribute.KeyValue{attribute.String("mcpsts.subject.id", auditvalue.Bound(c.Caller.Subject, auditvalue.Max)),
			attribute.String("mcpsts.client_id", auditvalue.Bound(c.Caller.ClientID, auditvalue.Max)),
			attribute.String("mcpsts.actor.id", auditvalue.Bound(strings.Join(c.Caller.Chain(), " "), auditvalue.Max)),
			attribute.String("mcpsts.tool", auditvalue.Bound(c.Tool, auditvalue.Max)), attribute.String("mcpsts.tool.rule", d.Rule),
			attribute.String("mcpsts.tool.args_sha256", resource.ArgumentsDigest(c.Args)), attribute.String("mcpsts.deny.reason", auditvalue.Bound(d.Reason, auditvalue.Max)),
			attribute.String("mcpsts.source_ip", c.SourceIP), attribute.String("mcpsts.token.jti", c.Caller.ID)}
		if _, err := refusals.Record("tool."+d.Effect, c.Time, trace.SpanContextFromContext(ctx), attrs); err != nil {
			log.Error("audit log", "error", err)
		}
	}
	newResource := func() (*resource.Server, error) {
		toolScopes := map[string][]string{}
		if cfg.ToolScopes != "" {
			data, err := os.ReadFile(cfg.ToolScopes)
			if err != nil {
				return nil, err
			}
			if err := yaml.Unmarshal(data, &toolScopes); err != nil { // JSON is YAML
				return nil, fmt.Errorf("%s: want a map of tool names to lists of scopes: %v", cfg.ToolScopes, err)
			}
		}
		var policy resource.ToolPolicy
		if cfg.ToolPolicy != "" {
			p, err := toolpolicy.LoadFile(cfg.ToolPolicy, cfg.Resource)
			if err != nil {
				return nil, err
			}
			policy = p
		}
		rc := resource.Config{Resource: cfg.Resource, Issuer: cfg.Broker, ToolScopes: toolScopes, Log: log, Transport: brokerTransport, Delegator: delegator,
			DPoP: proofs, Introspection: introspection, ToolPolicy: policy}
		if policy != nil {
			rc.ToolDecisions = toolDecisions
		}
		return resource.New(rc)
	}
	rs, err := newResource()
	if err != nil {
		return err
	}
	tp, err := telemetry.New(ctx, telemetry.Options{ServiceVersion: version(), InstanceID: "gateway", Getenv: e.getenv})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tp.Shutdown(sctx)
	}()
	gc := gateway.Config{Resource: rs, Upstream: cfg.Upstream, UpstreamAudience: cfg.UpstreamAudience, UpstreamOwnsSessions: cfg.UpstreamOwnsSessions, AllowedHosts: cfg.AllowedHosts, Log: log,
		Admit: exchange.NewSourceLimiter(exchange.RateLimit{Rate: cfg.PerSource.Rate, Burst: cfg.PerSource.Burst}, exchange.SourcePrefixes{}, e.now).Allow, Tracer: tp.Tracer("mcpsts/gateway"), Meter: tp.Meters.Meter("mcpsts/gateway")}
	gc.Refused = func(r gateway.Refusal) {
		written, err := refusals.Record("gateway.refuse", r.Time, trace.SpanContext{}, []attribute.KeyValue{
			attribute.Int("mcpsts.http.status", r.Status), attribute.String("mcpsts.http.method", r.Method),
			attribute.String("mcpsts.http.path", r.Path), attribute.String("mcpsts.source_ip", r.SourceIP),
			attribute.String("mcpsts.challenge", r.Challenge), attribute.String("mcpsts.trace_id", r.TraceID)})
		if err != nil {
			log.Error("audit log", "error", err)
		}
		if written {
			log.Warn("request refused", "status", r.Status, "method", r.Method, "path", r.Path, "source_ip", r.SourceIP, "challenge", r.Challenge)
		}
	}
	if cfg.UpstreamCA != "" {
		roots, err := pool(cfg.UpstreamCA)
		if err != nil {
			return err
		}
		gc.UpstreamTLS = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 64}
	}
	g, err := gateway.New(gc)
	if err != nil {
		return err
	}
	cert, _, err := tlsserver.LoadCertificate(cfg.TLS.Cert, cfg.TLS.Key, e.now(), true)
	if err != nil {
		return err
	}
	limits := tlsserver.DefaultLimits()
	limits.WriteTimeout = 0 // event streams last as long as the session
	limits.MaxBodyBytes = 4 << 20
	lcfg := tlsserver.Config{Addr: cfg.Listen, TLS: tlsserver.TLSConfig(cert, tls.VersionTLS12), Limits: limits, Log: log}
	if e.listener != nil {
		lcfg.Listener = e.listener(cfg.Listen)
	}
	srv, err := tlsserver.Listen(lcfg)
	if err != nil {
		return err
	}
	// The resource server in force keeps the broker's keys fresh, and is
	// built again when the tool-scope file changes.
	go g.Run(ctx, gateway.Reload{File: cfg.ToolScopes, Also: []string{cfg.ToolPolicy}, Build: newResource})
	banner, _ := json.Marshal(map[string]string{"listening": srv.Addr().String(), "resource": cfg.Resource, "upstream": cfg.Upstream})
	fmt.Fprintf(cmd.OutOrStdout(), "mcpsts gateway %s\n", banner)
	log.Info("mcpsts gateway serving", "addr", srv.Addr().String(), "resource", cfg.Resource, "started", time.Now().UTC().Format(time.RFC3339))
	return srv.Serve(ctx, g.Handler())
}

// brokerTrusted fails when the broker's certificate does not verify: the
// gateway would start and never load the broker's keys (every request
// refused, /readyz failing), so it says which setting fixes it instead. A
// broker that does not answer now is not an error: its keys load when it
// does.
func brokerTrusted(ctx context.Context, tr http.RoundTripper, broker string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, broker, nil)
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err == nil {
		resp.Body.Close()
		return nil
	}
	var cv *tls.CertificateVerificationError
	if !errors.As(err, &cv) {
		return nil
	}
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return fmt.Errorf("broker %s: its certificate is not signed by a CA this gateway trusts (%v): give the broker's CA with --broker-ca FILE (broker_ca in the file; serve --dev's is .mcpsts/ca.pem)", broker, cv.Err)
	}
	return fmt.Errorf("broker %s: its certificate does not verify: %v", broker, cv.Err)
}
