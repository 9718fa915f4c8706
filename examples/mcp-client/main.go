// Command mcp-client is an MCP client that acts for a person: it connects
// to an MCP server protected by mcpsts, sends you to sign in and consent in
// your browser, then lists the server's tools and calls one.
//
//	mcp-client --server https://127.0.0.1:9443/mcp --ca .mcpsts/ca.pem --client-id demo-app
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mcpsts/mcpsts/examples/mcp-client/mcpclient"
)

func main() {
	server := flag.String("server", "https://127.0.0.1:9443/mcp", "the MCP server's URL")
	caFile := flag.String("ca", ".mcpsts/ca.pem", "PEM CA of the MCP server's and mcpsts's certificates")
	clientID := flag.String("client-id", "demo-app", "the client's ID at mcpsts (serve --dev registers demo-app)")
	tool := flag.String("tool", "read_file", "the tool to call")
	name := flag.String("name", "readme.txt", "its name argument")
	flag.Parse()
	if err := run(*server, *caFile, *clientID, *tool, *name); err != nil {
		fmt.Fprintln(os.Stderr, "mcp-client:", err)
		os.Exit(1)
	}
}

func run(server, caFile, clientID, tool, name string) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("--ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("--ca %s: no PEM certificate", caFile)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	return mcpclient.Run(ctx, mcpclient.Config{
		Server: server, ClientID: clientID, HTTPClient: hc, Out: os.Stdout,
		Tool: tool, Args: map[string]any{"name": name, "content": "written by mcp-client"},
		Open: func(url string) error {
			fmt.Printf("Open this URL in your browser to sign in and consent:\n\n  %s\n\n", url)
			return nil
		},
	})
}
