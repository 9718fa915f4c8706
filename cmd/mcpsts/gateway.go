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
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/mcpsts/mcpsts/gateway"
	"github.com/mcpsts/mcpsts/internal/strictyaml"
	"github.com/mcpsts/mcpsts/internal/tlsserver"
	"github.com/mcpsts/mcpsts/resource"
)

// gatewayConfig is the gateway's configuration file; flags override it.
type gatewayConfig struct {
	Listen     string `yaml:"listen"`
	Resource   string `yaml:"resource"`    // the public MCP URL
	Broker     string `yaml:"broker"`      // the broker's issuer URL
	BrokerCA   string `yaml:"broker_ca"`   // a CA file for the broker (default: system roots)
	Upstream   string `yaml:"upstream"`    // http://127.0.0.1:PORT/mcp or unix:///path.sock
	UpstreamCA string `yaml:"upstream_ca"` // https upstreams only: the CA that signs its certificate
	ToolScopes string `yaml:"tool_scopes"` // a JSON or YAML file: tool name → scopes
	TLS        struct {
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
			cfg := gatewayConfig{Listen: "127.0.0.1:8444"}
			if file != "" {
				data, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				docs, err := strictyaml.Documents(data)
				if err != nil || len(docs) != 1 {
					return fmt.Errorf("%s: want one YAML document: %v", file, err)
				}
				if _, problems := strictyaml.Decode(docs[0], "", &cfg); len(problems) > 0 {
					errs := make([]error, len(problems))
					for i, p := range problems {
						errs[i] = fmt.Errorf("%s:%d: %s: %s", file, p.Line, p.Path, p.Msg)
					}
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
	fl.StringVar(&flags.TLS.Cert, "cert", "", "TLS certificate `file`")
	fl.StringVar(&flags.TLS.Key, "key", "", "TLS key `file`")
	return cmd
}

func merge(cfg *gatewayConfig, f gatewayConfig) {
	for _, p := range []struct {
		dst *string
		v   string
	}{{&cfg.Listen, f.Listen}, {&cfg.Resource, f.Resource}, {&cfg.Broker, f.Broker},
		{&cfg.BrokerCA, f.BrokerCA}, {&cfg.Upstream, f.Upstream}, {&cfg.UpstreamCA, f.UpstreamCA}, {&cfg.ToolScopes, f.ToolScopes},
		{&cfg.TLS.Cert, f.TLS.Cert}, {&cfg.TLS.Key, f.TLS.Key}} {
		if p.v != "" {
			*p.dst = p.v
		}
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
	toolScopes := map[string][]string{}
	if cfg.ToolScopes != "" {
		data, err := os.ReadFile(cfg.ToolScopes)
		if err != nil {
			return err
		}
		if err := yaml.Unmarshal(data, &toolScopes); err != nil { // JSON is YAML
			return fmt.Errorf("%s: want a map of tool names to lists of scopes: %v", cfg.ToolScopes, err)
		}
	}
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
	rs, err := resource.New(resource.Config{Resource: cfg.Resource, Issuer: cfg.Broker, ToolScopes: toolScopes, Log: log,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: brokerRoots, MinVersion: tls.VersionTLS12}}})
	if err != nil {
		return err
	}
	gc := gateway.Config{Resource: rs, Upstream: cfg.Upstream, Log: log}
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
	go rs.Run(ctx)
	banner, _ := json.Marshal(map[string]string{"listening": srv.Addr().String(), "resource": cfg.Resource, "upstream": cfg.Upstream})
	fmt.Fprintf(cmd.OutOrStdout(), "mcpsts gateway %s\n", banner)
	log.Info("mcpsts gateway serving", "addr", srv.Addr().String(), "resource", cfg.Resource, "started", time.Now().UTC().Format(time.RFC3339))
	return srv.Serve(ctx, g.Handler())
}
