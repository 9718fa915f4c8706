package dpop

import (
	"net/http"
	"strings"
	"sync"

	"golang.org/x/oauth2"
)

// Transport calls resource servers with DPoP-bound tokens: every request
// gets "Authorization: DPoP <token>" and a fresh proof of Signer's key for
// it (htm, htu, ath). A 401 use_dpop_nonce challenge is answered once, with
// the nonce the server gave, which is then kept for the next requests. A
// token that is not DPoP-bound goes out as Bearer, without a proof.
type Transport struct {
	Signer *Signer
	Source oauth2.TokenSource
	Base   http.RoundTripper // nil: http.DefaultTransport

	mu    sync.Mutex
	nonce map[string]string // by origin
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.Source.Token()
	if err != nil {
		return nil, err
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if !strings.EqualFold(tok.Type(), Scheme) {
		r := req.Clone(req.Context())
		r.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		return base.RoundTrip(r)
	}
	origin := req.URL.Scheme + "://" + req.URL.Host
	resp, err := t.send(base, req, tok.AccessToken, t.nonceFor(origin))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.keep(origin, resp)
		return resp, err
	}
	nonce := resp.Header.Get(NonceHeader)
	if nonce == "" || !strings.Contains(strings.Join(resp.Header.Values("WWW-Authenticate"), " "), "use_dpop_nonce") {
		return resp, nil
	}
	if req.Body != nil && req.GetBody == nil {
		return resp, nil // cannot send the body again
	}
	resp.Body.Close()
	t.setNonce(origin, nonce)
	r := req
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		r = req.Clone(req.Context())
		r.Body = body
	}
	resp, err = t.send(base, r, tok.AccessToken, nonce)
	t.keep(origin, resp)
	return resp, err
}

func (t *Transport) send(base http.RoundTripper, req *http.Request, token, nonce string) (*http.Response, error) {
	u := *req.URL
	u.RawQuery, u.Fragment = "", ""
	proof, err := t.Signer.Proof(req.Method, u.String(), token, nonce)
	if err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", Scheme+" "+token)
	r.Header.Set(Header, proof)
	return base.RoundTrip(r)
}

func (t *Transport) nonceFor(origin string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nonce[origin]
}

func (t *Transport) setNonce(origin, nonce string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.nonce == nil {
		t.nonce = map[string]string{}
	}
	t.nonce[origin] = nonce
}

// keep remembers a nonce a response offers for the next request.
func (t *Transport) keep(origin string, resp *http.Response) {
	if resp != nil {
		if n := resp.Header.Get(NonceHeader); n != "" {
			t.setNonce(origin, n)
		}
	}
}
