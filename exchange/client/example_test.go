package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/mcpsts/mcpsts/exchange/client"
	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/internal/devpki"
	"github.com/mcpsts/mcpsts/internal/server"
)

// devServer runs a `mcpsts serve --dev` in dir (its sample trust map lets
// demo-agent get files:read and files:write for the demo MCP server) and
// returns it, the development identity's source, and an HTTP client that
// trusts its CA, as --ca does.
func devServer(ctx context.Context, dir string) (*server.Server, client.DevSource, *http.Client, error) {
	cfg := config.Defaults()
	cfg.DataDir, cfg.Listen = dir, "127.0.0.1:0"
	s, err := server.New(ctx, &cfg, server.Options{Dev: true, Getenv: func(string) string { return "" }})
	if err != nil {
		return nil, client.DevSource{}, nil, err
	}
	go s.Run(ctx)
	pem, err := os.ReadFile(s.CAPath)
	if err != nil {
		return nil, client.DevSource{}, nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	key, err := devpki.LoadIdentityKey(dir)
	if err != nil {
		return nil, client.DevSource{}, nil, err
	}
	src := client.DevSource{Key: key, KeyID: devpki.IdentityKeyID(key), Issuer: config.DevIssuer, Subject: server.DevSubject}
	return s, src, &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}, nil
}

// An agent's token source with the development identity of a serve --dev
// (what `mcpsts token --dev` does): DevSource signs as demo-agent with the
// key in the data directory, and only the dev server's CA is trusted.
// TokenSource keeps one token per (audience, scopes) fresh for its users.
func ExampleDevSource() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, _ := os.MkdirTemp("", "mcpsts-example")
	defer os.RemoveAll(dir)
	s, _, hc, err := devServer(ctx, dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	key, err := devpki.LoadIdentityKey(dir) // dir/dev-identity-key.pem
	if err != nil {
		fmt.Println(err)
		return
	}
	src := client.DevSource{Key: key, KeyID: devpki.IdentityKeyID(key), Issuer: config.DevIssuer, Subject: "demo-agent"}
	c, err := client.New(s.Issuer, src, client.Options{HTTPClient: hc})
	if err != nil {
		fmt.Println(err)
		return
	}
	tok, err := c.TokenSource(server.DevDemoAudience, "files:read").Token() // an oauth2.TokenSource
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tok.TokenType, tok.Expiry.Sub(time.Now()).Round(time.Minute))
	// Output: Bearer 15m0s
}

// An agent whose platform puts its credential in a file (a Kubernetes
// projected service account token, refreshed by the kubelet) reads it at
// every exchange with FileSource. Here the file holds a development JWT.
func ExampleFileSource() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, _ := os.MkdirTemp("", "mcpsts-example")
	defer os.RemoveAll(dir)
	s, dev, hc, err := devServer(ctx, dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	ev, err := dev.Evidence(ctx, s.Issuer)
	if err != nil {
		fmt.Println(err)
		return
	}
	tokenFile := filepath.Join(dir, "workload-token")
	os.WriteFile(tokenFile, []byte(ev.Token), 0o600)

	c, err := client.New(s.Issuer, client.FileSource{Path: tokenFile, Label: "k8s"}, client.Options{HTTPClient: hc})
	if err != nil {
		fmt.Println(err)
		return
	}
	tok, err := c.TokenSource(server.DevDemoAudience, "files:write").Get(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tok.TokenType, tok.IssuedTokenType, (time.Duration(tok.ExpiresIn) * time.Second).Round(time.Minute))
	// Output: Bearer urn:ietf:params:oauth:token-type:access_token 15m0s
}
