package federationtest

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// WorkloadAPI is a SPIFFE Workload API server on a Unix socket, speaking
// the real gRPC protocol (go-spiffe's public proto package): it streams an
// X.509 context (an SVID of its trust domain, its bundle and the federated
// bundles) and the JWT bundles, and pushes new ones on Push.
type WorkloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	Addr string // unix:///…, for workloadapi.WithAddr

	own       *TrustDomain
	federated []*TrustDomain

	mu      sync.Mutex
	gen     int
	changed chan struct{} // closed and replaced on Push
}

// NewWorkloadAPI serves own (and federated trust domains' bundles) until t
// ends.
func NewWorkloadAPI(t testing.TB, own *TrustDomain, federated ...*TrustDomain) *WorkloadAPI {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	w := &WorkloadAPI{Addr: "unix://" + sock, own: own, federated: federated, changed: make(chan struct{})}
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, w)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return w
}

// Push streams the trust domains' current bundles to every watcher.
func (w *WorkloadAPI) Push() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gen++
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *WorkloadAPI) wait() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

var errNoHeader = errors.New("security header missing")

// checkHeader requires the workload.spiffe.io header every client sends.
func checkHeader(md metadata.MD, ok bool) error {
	if !ok || len(md.Get("workload.spiffe.io")) != 1 || md.Get("workload.spiffe.io")[0] != "true" {
		return errNoHeader
	}
	return nil
}

func derOf(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}

// FetchX509SVID implements the Workload API.
func (w *WorkloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	if err := checkHeader(metadata.FromIncomingContext(stream.Context())); err != nil {
		return err
	}
	for {
		changed := w.wait()
		chain, key := w.own.X509SVID("/mcpsts", SVIDOptions{})
		keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
		resp := &workload.X509SVIDResponse{
			Svids: []*workload.X509SVID{{
				SpiffeId: w.own.TD.IDString() + "/mcpsts", X509Svid: derOf(chain), X509SvidKey: keyDER,
				Bundle: derOf(w.own.Bundle().X509Authorities()),
			}},
			FederatedBundles: map[string][]byte{},
		}
		for _, f := range w.federated {
			resp.FederatedBundles[f.TD.IDString()] = derOf(f.Bundle().X509Authorities())
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
	}
}

// FetchJWTBundles implements the Workload API.
func (w *WorkloadAPI) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	if err := checkHeader(metadata.FromIncomingContext(stream.Context())); err != nil {
		return err
	}
	for {
		changed := w.wait()
		resp := &workload.JWTBundlesResponse{Bundles: map[string][]byte{}}
		for _, td := range append([]*TrustDomain{w.own}, w.federated...) {
			var set jose.JSONWebKeySet
			for kid, k := range td.Bundle().JWTAuthorities() {
				set.Keys = append(set.Keys, jose.JSONWebKey{Key: k, KeyID: kid, Use: "jwt-svid"})
			}
			raw, _ := json.Marshal(set)
			resp.Bundles[td.TD.IDString()] = raw
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
	}
}

// FetchJWTSVID implements the Workload API: a JWT-SVID of the own trust
// domain's workload /mcpsts-agent for the requested audience.
func (w *WorkloadAPI) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	if err := checkHeader(metadata.FromIncomingContext(ctx)); err != nil {
		return nil, err
	}
	const path = "/mcpsts-agent"
	tok := w.own.JWTSVID(path, req.Audience, time.Now().Add(5*time.Minute))
	return &workload.JWTSVIDResponse{Svids: []*workload.JWTSVID{{SpiffeId: w.own.TD.IDString() + path, Svid: tok}}}, nil
}
