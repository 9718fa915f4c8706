// Command mcp-server runs one of the example MCP servers (files or audit)
// behind mcpsts's resource middleware, over TLS.
//
//	mcp-server --role audit --listen 127.0.0.1:9444 --resource https://127.0.0.1:9444/mcp \
//	    --broker https://127.0.0.1:8443 --ca ca.pem --cert server.pem --key server-key.pem
//	mcp-server --role files --listen 127.0.0.1:9443 --resource https://127.0.0.1:9443/mcp \
//	    --broker https://127.0.0.1:8443 --ca ca.pem --cert server.pem --key server-key.pem \
//	    --audit https://127.0.0.1:9444/mcp --identity /var/run/secrets/tokens/mcpsts
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mcpsts/mcpsts/examples/mcp-server/mcpserver"
	"github.com/mcpsts/mcpsts/exchange/client"
	"github.com/mcpsts/mcpsts/resource"
	"github.com/mcpsts/mcpsts/toolpolicy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mcp-server:", err)
		os.Exit(1)
	}
}

func run() error {
	role := flag.String("role", "files", "files or audit")
	listen := flag.String("listen", "127.0.0.1:9443", "address to listen on")
	res := flag.String("resource", "", "this server's resource URI (its MCP URL)")
	broker := flag.String("broker", "", "the mcpsts issuer URL")
	caFile := flag.String("ca", "", "PEM CA that signed the broker's and the audit server's certificates")
	cert := flag.String("cert", "", "TLS certificate (PEM)")
	key := flag.String("key", "", "TLS key (PEM)")
	audit := flag.String("audit", "", "files: the audit server's resource URI")
	identity := flag.String("identity", "", "files: a file holding this server's own workload token, its actor credential for delegation")
	dpopMode := flag.String("dpop", resource.DPoPAccept, "DPoP-bound tokens: off, accept or require")
	introspect := flag.String("introspection-identity", "", "a file holding this server's own workload token, to ask the broker whether each token is revoked or used (single use)")
	policyFile := flag.String("tool-policy", "", "a tool policy file (docs/tool-policies.md) holding --resource's policy: each tools/call decided on its arguments and caller")
	flag.Parse()

	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return fmt.Errorf("--ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("--ca %s: no PEM certificate", *caFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	cfg := resource.Config{Resource: *res, Issuer: *broker, Transport: tr, Log: log}
	if cfg.DPoP, err = resource.DPoPMode(*dpopMode); err != nil {
		return fmt.Errorf("--dpop: %w", err)
	}
	if *policyFile != "" {
		if cfg.ToolPolicy, err = toolpolicy.LoadFile(*policyFile, *res); err != nil {
			return fmt.Errorf("--tool-policy: %w", err)
		}
	}
	if *introspect != "" {
		src := client.FileSource{Path: *introspect, Label: "introspection-identity"}
		cfg.Introspection = resource.BrokerIntrospection(*broker, client.Assertion(src, *broker))
	}
	var h func(*resource.Server) http.Handler
	switch *role {
	case "files":
		cfg.ToolScopes, cfg.Implies, cfg.FirstScopes = mcpserver.FilesToolScopes, mcpserver.FilesImplies, mcpserver.FilesFirstScopes
		if *identity != "" {
			if cfg.Delegator, err = client.New(*broker, client.FileSource{Path: *identity, Label: "identity"}, client.Options{HTTPClient: hc}); err != nil {
				return err
			}
		}
		h = func(rs *resource.Server) http.Handler { return mcpserver.Files(rs, *audit, hc) }
	case "audit":
		cfg.ToolScopes = mcpserver.AuditToolScopes
		h = mcpserver.Audit
	default:
		return fmt.Errorf("--role %q: want files or audit", *role)
	}
	rs, err := resource.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go rs.Run(ctx)
	srv := &http.Server{Addr: *listen, Handler: h(rs), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	log.Info("serving", "role", *role, "resource", *res, "metadata", rs.MetadataURL())
	if err := srv.ListenAndServeTLS(*cert, *key); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
