package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mcpsts/mcpsts/examples/mcp-client/mcpclient"
	"github.com/mcpsts/mcpsts/examples/mcp-server/mcpserver"
	"github.com/mcpsts/mcpsts/resource"
)

// TestDevPeopleWalkthrough is README's "MCP clients that act for a
// person" on serve --dev: examples/mcp-client (the Go SDK's OAuth client,
// as the registered demo-app) connects to the example files server, the
// browser signs in at the development login, consents, and the client
// lists the tools and reads a file. The sample people map is the one serve
// --dev writes, with the demo server's port of this test.
func TestDevPeopleWalkthrough(t *testing.T) {
	lnFiles, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	files := "https://" + lnFiles.Addr().String() + "/mcp"
	cfg := devConfig(t)
	maps := filepath.Join(cfg.DataDir, "trustmaps")
	if err := os.MkdirAll(maps, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(maps, DevPeopleMapFile), []byte(strings.ReplaceAll(devPeopleMap, DevDemoAudience, files)), 0o600)
	s, roots := runDev(t, cfg)
	ctx := t.Context()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	rs, err := resource.New(resource.Config{Resource: files, Issuer: s.Issuer, Transport: tr, ToolScopes: mcpserver.FilesToolScopes, Implies: mcpserver.FilesImplies})
	if err != nil {
		t.Fatal(err)
	}
	go rs.Run(ctx)
	pair, err := tls.LoadX509KeyPair(filepath.Join(cfg.DataDir, "server.pem"), filepath.Join(cfg.DataDir, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mcpserver.Files(rs, "", &http.Client{Transport: tr}), TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}}}
	go srv.ServeTLS(lnFiles, "", "")
	defer srv.Close()

	leaf, _ := os.ReadFile(filepath.Join(cfg.DataDir, "server.pem"))
	browser := newBrowser(t, leaf)
	shots := &people{screenshot: os.Getenv("MCPSTS_SCREENSHOTS")}
	if shots.screenshot == "" {
		shots.screenshot = t.TempDir()
	}
	var out bytes.Buffer
	rctx, rcancel := context.WithTimeout(ctx, 90*time.Second)
	defer rcancel()
	err = mcpclient.Run(rctx, mcpclient.Config{Server: files, ClientID: DevClientID, HTTPClient: &http.Client{Transport: tr}, Out: &out,
		Open: func(url string) error {
			if err := chromedp.Do(browser, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(`#user`))); err != nil {
				return err
			}
			page, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS(`body`)))
			if err != nil {
				return err
			}
			if !strings.Contains(page, "Development login: anyone can sign in as anyone") || !strings.Contains(page, "Sign in (development)") {
				t.Errorf("the development login page:\n%s", page)
			}
			shots.shot(t, browser, "devlogin")
			if err := chromedp.Do(browser, chromedp.Click(chromedp.CSS(`button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`button[value=approve]`))); err != nil {
				return err
			}
			page, _ = chromedp.Run(browser, chromedp.Text(chromedp.CSS(`main`)))
			for _, want := range []string{"mcpsts demo app (examples/mcp-client) wants access", "Signed in as alice", DevClientID, files, "Read the files of the demo MCP server (files:read)"} {
				if !strings.Contains(page, want) {
					t.Errorf("the consent screen does not say %q:\n%s", want, page)
				}
			}
			shots.shot(t, browser, "devconsent")
			return chromedp.Do(browser, chromedp.Click(chromedp.CSS(`button[value=approve]`)))
		}})
	if err != nil {
		t.Fatalf("mcp-client: %v\n%s", err, out.String())
	}
	if got := out.String(); !strings.Contains(got, "tool read_file:") || !strings.Contains(got, "read_file: hello from the files server") {
		t.Fatalf("mcp-client printed:\n%s", got)
	}
}
