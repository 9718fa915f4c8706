package federation_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	spiffefed "github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/federation/federationtest"
)

// bundleServer serves a trust domain's bundle as a SPIFFE bundle endpoint.
type bundleServer struct {
	mu   sync.Mutex
	body func() []byte
}

func (b *bundleServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	body := b.body
	b.mu.Unlock()
	w.Write(body())
}

func (b *bundleServer) set(f func() []byte) { b.mu.Lock(); b.body = f; b.mu.Unlock() }

func marshal(b *spiffebundle.Bundle) []byte { raw, _ := b.Marshal(); return raw }

func TestBundleEndpointWeb(t *testing.T) {
	partner := federationtest.NewTrustDomain("partner.example.com")
	bs := &bundleServer{body: func() []byte { return marshal(partner.Bundle()) }}
	srv := httptest.NewTLSServer(bs)
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	clk := &clock{now: time.Now()}
	ep, err := federation.NewBundleEndpoint(federation.BundleEndpointConfig{
		TrustDomain: partner.TD, URL: srv.URL, Options: []spiffefed.FetchOption{spiffefed.WithWebPKIRoots(roots)},
		StaleBound: time.Hour, Clock: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	bundles := federation.NewBundles()
	bundles.Add(partner.TD, ep)
	ctx := context.Background()
	if _, err := bundles.GetX509BundleForTrustDomain(partner.TD); !errors.Is(err, federation.ErrNotReady) {
		t.Fatalf("before the first fetch: %v", err)
	}
	if err := ep.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	svid, _ := partner.X509SVID("/svc", federationtest.SVIDOptions{})
	if _, _, err := x509svid.Verify(svid, bundles); err != nil {
		t.Fatalf("SVID of the federated domain: %v", err)
	}

	// Rotation through the endpoint is picked up without restart.
	partner.Rotate()
	fresh, _ := partner.X509SVID("/svc", federationtest.SVIDOptions{})
	if _, _, err := x509svid.Verify(fresh, bundles); err == nil {
		t.Fatal("a new CA verified before the bundle was refreshed")
	}
	if err := ep.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(fresh, bundles); err != nil {
		t.Fatalf("after refresh: %v", err)
	}
	tok := partner.JWTSVID("/svc", []string{"https://sts.example.com"}, time.Now().Add(time.Minute))
	if _, err := jwtsvid.ParseAndValidate(tok, bundles, []string{"https://sts.example.com"}); err != nil {
		t.Fatalf("JWT-SVID with the endpoint's JWT authorities: %v", err)
	}

	// Garbage is refused; the last good bundle keeps serving up to the
	// stale bound. (A SPIFFE bundle document does not name its trust
	// domain: https_web cannot tell another domain's bundle, https_spiffe
	// refuses its endpoint — see TestBundleEndpointSPIFFE.)
	bs.set(func() []byte { return []byte("<html>") })
	if err := ep.Refresh(ctx); err == nil {
		t.Error("garbage: Refresh succeeded")
	}
	clk.Add(30 * time.Minute)
	if _, _, err := x509svid.Verify(fresh, bundles); err != nil {
		t.Fatalf("stale bundle within the bound: %v", err)
	}
	clk.Add(2 * time.Hour)
	if _, err := bundles.GetX509BundleForTrustDomain(partner.TD); !errors.Is(err, federation.ErrNotReady) {
		t.Fatalf("beyond the stale bound: %v", err)
	}
}

func TestBundleEndpointSPIFFE(t *testing.T) {
	partner := federationtest.NewTrustDomain("partner.example.com")
	chain, key := partner.X509SVID("/bundle-endpoint", federationtest.SVIDOptions{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(marshal(partner.Bundle())) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{chain[0].Raw}, PrivateKey: key, Leaf: chain[0]}}}
	srv.StartTLS()
	defer srv.Close()
	endpointID := spiffeid.RequireFromString("spiffe://partner.example.com/bundle-endpoint")
	// The first bundle is known out of band (https_spiffe trusts the
	// domain's own bundle to authenticate its endpoint).
	ep, err := federation.NewBundleEndpoint(federation.BundleEndpointConfig{
		TrustDomain: partner.TD, URL: srv.URL,
		Options: []spiffefed.FetchOption{spiffefed.WithSPIFFEAuth(partner.Bundle(), endpointID)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ep.Refresh(context.Background()); err != nil {
		t.Fatalf("https_spiffe: %v", err)
	}
	// An endpoint serving as another trust domain's workload is refused.
	other := federationtest.NewTrustDomain("other.example.com")
	otherChain, otherKey := other.X509SVID("/bundle-endpoint", federationtest.SVIDOptions{})
	impostor := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(marshal(other.Bundle())) }))
	impostor.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{otherChain[0].Raw}, PrivateKey: otherKey}}}
	impostor.StartTLS()
	defer impostor.Close()
	wrongTD, _ := federation.NewBundleEndpoint(federation.BundleEndpointConfig{
		TrustDomain: partner.TD, URL: impostor.URL, Options: []spiffefed.FetchOption{spiffefed.WithSPIFFEAuth(partner.Bundle(), endpointID)},
	})
	if err := wrongTD.Refresh(context.Background()); err == nil {
		t.Fatal("a bundle endpoint of another trust domain was trusted")
	}
	wrongID := spiffeid.RequireFromString("spiffe://partner.example.com/someone-else")
	bad, _ := federation.NewBundleEndpoint(federation.BundleEndpointConfig{
		TrustDomain: partner.TD, URL: srv.URL, Options: []spiffefed.FetchOption{spiffefed.WithSPIFFEAuth(partner.Bundle(), wrongID)},
	})
	if err := bad.Refresh(context.Background()); err == nil {
		t.Fatal("an endpoint with another SPIFFE ID was trusted")
	}
}

func TestWorkloadAPIBundles(t *testing.T) {
	own, partner := federationtest.NewTrustDomain("prod.example.org"), federationtest.NewTrustDomain("partner.example.com")
	api := federationtest.NewWorkloadAPI(t, own, partner)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := federation.NewWorkloadAPISource(ctx, api.Addr, nil)
	bundles := federation.NewBundles()
	bundles.Add(own.TD, src)
	bundles.Add(partner.TD, src)
	svid, _ := partner.X509SVID("/svc", federationtest.SVIDOptions{})
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, _, err := x509svid.Verify(svid, bundles)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("federated SVID through the Workload API: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	tok := own.JWTSVID("/svc", []string{"https://sts.example.com"}, time.Now().Add(time.Minute))
	if _, err := jwtsvid.ParseAndValidate(tok, bundles, []string{"https://sts.example.com"}); err != nil {
		t.Fatalf("JWT-SVID through the Workload API: %v", err)
	}

	// A bundle update pushed mid-test applies live.
	partner.Rotate()
	fresh, _ := partner.X509SVID("/svc", federationtest.SVIDOptions{})
	api.Push()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, err := x509svid.Verify(fresh, bundles); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pushed bundle was not applied within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, _, err := x509svid.Verify(svid, bundles); err == nil {
		t.Fatal("an SVID of the rotated-away CA still verifies")
	}
}

func TestLoadBundleFile(t *testing.T) {
	td := federationtest.NewTrustDomain("prod.example.org")
	dir := t.TempDir()
	jsonFile, pemFile, bad := filepath.Join(dir, "b.json"), filepath.Join(dir, "b.pem"), filepath.Join(dir, "bad")
	os.WriteFile(jsonFile, marshal(td.Bundle()), 0o600)
	var pemData []byte
	for _, c := range td.Bundle().X509Authorities() {
		pemData = append(pemData, []byte("-----BEGIN CERTIFICATE-----\n")...)
		pemData = append(pemData, []byte(b64lines(c.Raw))...)
		pemData = append(pemData, []byte("-----END CERTIFICATE-----\n")...)
	}
	os.WriteFile(pemFile, pemData, 0o600)
	os.WriteFile(bad, []byte("nope"), 0o600)
	for _, f := range []string{jsonFile, pemFile} {
		b, err := federation.LoadBundleFile(td.TD, f)
		if err != nil || len(b.X509Authorities()) != 1 {
			t.Errorf("LoadBundleFile(%s) = %v", f, err)
		}
	}
	if _, err := federation.LoadBundleFile(td.TD, bad); err == nil || !strings.Contains(err.Error(), "bundle of prod.example.org in") {
		t.Errorf("bad file: %v", err)
	}
	bundles := federation.NewBundles()
	b, _ := federation.LoadBundleFile(td.TD, jsonFile)
	if err := bundles.Add(td.TD, b); err != nil {
		t.Fatal(err)
	}
	if err := bundles.Add(td.TD, b); err == nil {
		t.Fatal("a trust domain configured twice")
	}
}

func TestWorkloadAPIDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := federation.NewWorkloadAPISource(ctx, "unix://"+filepath.Join(t.TempDir(), "none.sock"), nil)
	td := spiffeid.RequireTrustDomainFromString("prod.example.org")
	if _, err := src.GetBundleForTrustDomain(td); !errors.Is(err, federation.ErrNotReady) {
		t.Fatalf("no agent: %v, want ErrNotReady", err)
	}
}

// FuzzLoadBundleFile: a trust domain's bundle is attacker input when a
// bundle endpoint or a file is not ours. Parsing never panics, and a bundle
// that parses belongs to the trust domain asked for. (A bundle endpoint's
// answer goes through the same go-spiffe parser, spiffebundle.Read.)
func FuzzLoadBundleFile(f *testing.F) {
	td := federationtest.NewTrustDomain("prod.example.org")
	f.Add(marshal(td.Bundle()))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n" + b64lines(td.Bundle().X509Authorities()[0].Raw) + "-----END CERTIFICATE-----\n"))
	f.Add([]byte(`{"keys":[{"use":"jwt-svid","kty":"EC","crv":"P-256","x":"","y":""}],"spiffe_refresh_hint":-1}`))
	f.Add([]byte(`{`))
	path := filepath.Join(f.TempDir(), "bundle")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := federation.LoadBundleFile(td.TD, path)
		if err != nil {
			return
		}
		if b.TrustDomain() != td.TD {
			t.Fatalf("a bundle of %s parsed as %s's", b.TrustDomain(), td.TD)
		}
	})
}
