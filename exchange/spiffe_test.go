package exchange_test

import (
	"crypto/tls"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/attest/spiffe"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/trustmaps"
)

type tdBundle struct{ td *federationtest.TrustDomain }

func (b tdBundle) GetBundleForTrustDomain(spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	return b.td.Bundle(), nil
}

const spiffeMaps = `
id: billing-svid
match: {provider: prod.example.org, subject: "spiffe://prod.example.org/ns/billing/sa/agent"}
grant: {client_id: billing, audiences: ["https://payments.example.com/mcp"], scopes: [payments:read], default_scopes: [payments:read]}
`

func TestSPIFFEClients(t *testing.T) {
	e := newEnv(t)
	prod, stranger := federationtest.NewTrustDomain("prod.example.org"), federationtest.NewTrustDomain("stranger.example.net")
	bundles := federation.NewBundles()
	bundles.Add(prod.TD, tdBundle{prod})
	sv := &spiffe.Verifier{Bundles: bundles, Audiences: []string{broker}}
	eng, err := trustmaps.Compile(trustmaps.Document{Name: "m.yaml", Data: []byte(spiffeMaps)})
	if err != nil {
		t.Fatal(err)
	}
	ov, _ := oidc.New(e.clock) // no OIDC providers here
	router := attest.JWTRouter{OIDC: ov, SPIFFE: sv}
	e.restart(t, func(c *exchange.Config) {
		c.Attestors = map[string]attest.Attestor{exchange.TokenTypeJWT: router, exchange.GrantJWTBearer: router, exchange.EvidenceTLSClient: sv}
		c.Decider = eng
	})
	cert := func(td *federationtest.TrustDomain) tls.Certificate {
		chain, key := td.X509SVID("/ns/billing/sa/agent", federationtest.SVIDOptions{})
		return tls.Certificate{Certificate: [][]byte{chain[0].Raw}, PrivateKey: key}
	}
	cc := url.Values{"grant_type": {"client_credentials"}, "client_id": {"billing"}, "resource": {"https://payments.example.com/mcp"}}
	res := e.post(t, cc, nil, cert(prod))
	if res.status != 200 {
		t.Fatalf("tls_client_auth: %d %v", res.status, res.body)
	}
	if c := verify(t, e, res.body["access_token"].(string)); c["sub"] != "workload:prod.example.org/spiffe://prod.example.org/ns/billing/sa/agent" || c["client_id"] != "billing" {
		t.Fatalf("claims %v", c)
	}
	for name, c := range map[string]struct {
		form url.Values
		cert tls.Certificate
		desc string
	}{
		"no client_id":     {url.Values{"grant_type": {"client_credentials"}, "resource": {"https://payments.example.com/mcp"}}, cert(prod), "tls_client_auth needs client_id"},
		"another client":   {url.Values{"grant_type": {"client_credentials"}, "client_id": {"other"}, "resource": {"https://payments.example.com/mcp"}}, cert(prod), "client_id is not the client"},
		"untrusted domain": {cc, cert(stranger), "the credential was refused [check invalid_svid]"},
	} {
		t.Run(name, func(t *testing.T) {
			res := e.post(t, c.form, nil, c.cert)
			if res.status != 401 || res.body["error"] != "invalid_client" || !strings.Contains(res.body["error_description"].(string)+" [check "+e.check()+"]", c.desc) {
				t.Fatalf("got %d %v, want 401 invalid_client %q", res.status, res.body, c.desc)
			}
		})
	}

	// The X.509-SVID of the connection as the subject of a token exchange.
	mtlsForm := url.Values{"grant_type": {exchange.GrantTokenExchange}, "subject_token": {"tls"}, "subject_token_type": {exchange.TokenTypeMTLS}, "resource": {"https://payments.example.com/mcp"}}
	if res := e.post(t, mtlsForm, nil, cert(prod)); res.status != 200 {
		t.Fatalf("X.509-SVID as the exchange's subject: %d %v", res.status, res.body)
	}
	if res := e.post(t, mtlsForm, nil); res.status != 400 || res.body["error_description"] != "the credential was refused" || e.check() != "no_certificate" {
		t.Fatalf("mtls subject without a certificate: %d %v", res.status, res.body)
	}
	mtlsForm.Set("subject_token", "x")
	if res := e.post(t, mtlsForm, nil, cert(prod)); res.status != 400 || !strings.Contains(res.body["error_description"].(string), "literal tls") {
		t.Fatalf("mtls subject with another token: %d %v", res.status, res.body)
	}

	svid := prod.JWTSVID("/ns/billing/sa/agent", []string{broker}, time.Now().Add(5*time.Minute))
	f := url.Values{"grant_type": {exchange.GrantTokenExchange}, "subject_token": {svid}, "subject_token_type": {exchange.TokenTypeJWT}, "resource": {"https://payments.example.com/mcp"}}
	if res := e.post(t, f, nil); res.status != 200 {
		t.Fatalf("JWT-SVID as subject token: %d %v", res.status, res.body)
	}
	if res := e.post(t, url.Values{"grant_type": {exchange.GrantJWTBearer}, "assertion": {svid}, "resource": {"https://payments.example.com/mcp"}}, nil); res.status != 200 {
		t.Fatalf("JWT-SVID as assertion: %d %v", res.status, res.body)
	}
	wrongAud := prod.JWTSVID("/ns/billing/sa/agent", []string{"https://other.example"}, time.Now().Add(5*time.Minute))
	f.Set("subject_token", wrongAud)
	if res := e.post(t, f, nil); res.status != 400 || res.body["error_description"] != "the credential was refused" || e.check() != "wrong_audience" {
		t.Fatalf("JWT-SVID for another audience: %d %v", res.status, res.body)
	}
}
