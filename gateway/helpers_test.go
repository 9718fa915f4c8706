package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mcpsts/mcpsts/gateway"
	"github.com/mcpsts/mcpsts/issuer/issuertest"
	"github.com/mcpsts/mcpsts/resource"
)

// serveGateway serves a gateway (HTTPS, its MCP endpoint at URL+"/mcp") in
// front of upstream, verifying the tokens of an issuer in memory; rc and
// gc, when set, adjust the resource and gateway configurations.
func serveGateway(t testing.TB, upstream string, rc func(*resource.Config), gc func(*gateway.Config)) (*httptest.Server, *issuertest.Broker, *gateway.Gateway) {
	t.Helper()
	broker, err := issuertest.New("https://sts.example.com")
	if err != nil {
		t.Fatal(err)
	}
	var handler http.Handler
	gw := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	gw.StartTLS()
	t.Cleanup(gw.Close)
	rcfg := resource.Config{Resource: gw.URL + "/mcp", Issuer: broker.URL, Keys: broker}
	if rc != nil {
		rc(&rcfg)
	}
	rs, err := resource.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	gcfg := gateway.Config{Resource: rs, Upstream: upstream}
	if gc != nil {
		gc(&gcfg)
	}
	g, err := gateway.New(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	handler = g.Handler()
	return gw, broker, g
}
