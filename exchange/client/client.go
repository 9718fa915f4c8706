// Package client is what agents embed to get tokens from mcpsts: it
// discovers the token endpoint from the broker's RFC 8414 metadata, builds
// evidence with an evidence source (the platform's own credential), and
// exchanges it (RFC 8693) for an access token for one MCP server. It is
// the agent side only: it imports nothing of the server.
package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcpsts/mcpsts/dpop"
)

// Evidence is what a source produces: a token and its RFC 8693 type.
type Evidence struct {
	Token     string
	TokenType string
}

// Source produces evidence for a broker. Implementations must be safe for
// concurrent use and read their credential afresh on every call (platform
// tokens rotate under them).
type Source interface {
	// Name says which source this is, for diagnostics.
	Name() string
	// Evidence returns the workload's credential, addressed to audience
	// (the broker's issuer).
	Evidence(ctx context.Context, audience string) (Evidence, error)
}

// CertificateSource is a source whose evidence is a TLS client certificate
// (an X.509-SVID) proven on the connection: the client presents it on every
// handshake with the broker and names it as the subject of the exchange.
type CertificateSource interface {
	Source
	ClientCertificate(ctx context.Context) (*tls.Certificate, error)
}

// tokenTypeMTLS names the connection's certificate as the exchange's
// subject (the broker's urn:mcpsts:token-type:mtls).
const tokenTypeMTLS = "urn:mcpsts:token-type:mtls"

// Client talks to one broker. It is safe for concurrent use.
type Client struct {
	broker string
	http   *http.Client
	source Source
	now    func() time.Time

	dpop    *dpop.Signer // nil: bearer tokens
	posture []PostureSource

	mu            sync.Mutex
	nonce         string                  // the broker's last DPoP nonce
	tokenEndpoint string                  // discovered once
	sources       map[string]*TokenSource // by audience and scopes
}

// Options configure a Client.
type Options struct {
	// HTTPClient carries the requests; nil means one with a 30s timeout.
	// Trust a private CA through its transport.
	HTTPClient *http.Client
	Clock      func() time.Time
	// DPoP, when set, proves this key on every token request, so that
	// the tokens are DPoP-bound to it (RFC 9449); call MCP servers with
	// them through dpop.Transport.
	DPoP *dpop.Signer
	// Posture are the sources of the signed posture assertions sent with
	// every token request (posture_token), read again for each.
	Posture []PostureSource
}

// New returns a client for the broker at issuer URL broker (https only).
func New(broker string, source Source, o Options) (*Client, error) {
	u, err := url.Parse(broker)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, &Error{Step: StepConfig, Description: fmt.Sprintf("the broker URL %q is not https (plain http is refused)", broker)}
	}
	if source == nil {
		return nil, &Error{Step: StepConfig, Description: "no evidence source"}
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if cs, ok := source.(CertificateSource); ok {
		hc, err := withClientCertificate(o.HTTPClient, cs)
		if err != nil {
			return nil, err
		}
		o.HTTPClient = hc
	}
	return &Client{broker: strings.TrimSuffix(broker, "/"), http: o.HTTPClient, source: source, now: o.Clock, dpop: o.DPoP, posture: o.Posture}, nil
}

// withClientCertificate returns a copy of hc whose TLS handshakes present
// the source's current certificate.
func withClientCertificate(hc *http.Client, cs CertificateSource) (*http.Client, error) {
	var t *http.Transport
	switch base := hc.Transport.(type) {
	case nil:
		t = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		t = base.Clone()
	default:
		return nil, &Error{Step: StepConfig, Description: "a certificate source needs an *http.Transport"}
	}
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	t.TLSClientConfig.GetClientCertificate = func(info *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return cs.ClientCertificate(info.Context())
	}
	out := *hc
	out.Transport = t
	return &out, nil
}

// Steps of an exchange, named in errors.
const (
	StepConfig    = "configuration"
	StepDiscovery = "discovery"
	StepEvidence  = "evidence"
	StepExchange  = "exchange"
	StepPosture   = "posture"
)

// Error says which step failed and, for the exchange, the OAuth error the
// broker gave.
type Error struct {
	Step        string
	Code        string // OAuth error code, when the broker answered with one
	Description string
	Status      int    // HTTP status, when the broker answered
	TraceID     string // the broker's trace of the refused request: its audit line and spans
	Err         error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Step + " failed")
	if e.Code != "" {
		b.WriteString(": " + e.Code)
	}
	if e.Description != "" {
		b.WriteString(": " + e.Description)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	if e.TraceID != "" {
		b.WriteString(" (trace ID " + e.TraceID + ")")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Token is an access token from the broker.
type Token struct {
	AccessToken     string    `json:"access_token"`
	IssuedTokenType string    `json:"issued_token_type,omitempty"`
	TokenType       string    `json:"token_type"`
	ExpiresIn       int64     `json:"expires_in"`
	Scope           string    `json:"scope,omitempty"`
	Expiry          time.Time `json:"expiry"`
}

func (c *Client) endpoint(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tokenEndpoint != "" {
		return c.tokenEndpoint, nil
	}
	u, _ := url.Parse(c.broker)
	md := u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + u.EscapedPath()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, md, nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return "", &Error{Step: StepDiscovery, Description: "the broker is unreachable", Err: err}
	}
	defer resp.Body.Close()
	var doc struct {
		Issuer        string `json:"issuer"`
		TokenEndpoint string `json:"token_endpoint"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc) != nil {
		return "", &Error{Step: StepDiscovery, Status: resp.StatusCode, Description: "no authorization server metadata at " + md}
	}
	if strings.TrimSuffix(doc.Issuer, "/") != c.broker { // RFC 8414 §3.3
		return "", &Error{Step: StepDiscovery, Description: fmt.Sprintf("the metadata names issuer %q, not %q", doc.Issuer, c.broker)}
	}
	if te, err := url.Parse(doc.TokenEndpoint); err != nil || te.Scheme != "https" {
		return "", &Error{Step: StepDiscovery, Description: "the metadata has no https token_endpoint"}
	}
	c.tokenEndpoint = doc.TokenEndpoint
	return c.tokenEndpoint, nil
}

// Exchange gets a token for the MCP server audience with scopes (none: the
// trust map's defaults).
func (c *Client) Exchange(ctx context.Context, audience string, scopes []string) (*Token, error) {
	ev, err := c.source.Evidence(ctx, c.broker)
	if err != nil {
		return nil, &Error{Step: StepEvidence, Description: "source " + c.source.Name(), Err: err}
	}
	return c.exchange(ctx, url.Values{
		"subject_token":      {ev.Token},
		"subject_token_type": {ev.TokenType},
	}, audience, scopes)
}

// tokenTypeAccessToken is RFC 8693's type of an access token.
const tokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"

// Delegate exchanges subjectToken, an access token a caller presented to
// the MCP server embedding this client, for a token for the downstream
// server audience (RFC 8693 delegation): the client's own evidence is the
// actor token, so the broker records this server in act. It makes
// *Client a resource.Delegator.
func (c *Client) Delegate(ctx context.Context, subjectToken, audience string, scopes []string) (*oauth2.Token, error) {
	ev, err := c.source.Evidence(ctx, c.broker)
	if err != nil {
		return nil, &Error{Step: StepEvidence, Description: "source " + c.source.Name(), Err: err}
	}
	tok, err := c.exchange(ctx, url.Values{
		"subject_token":      {subjectToken},
		"subject_token_type": {tokenTypeAccessToken},
		"actor_token":        {ev.Token},
		"actor_token_type":   {ev.TokenType},
	}, audience, scopes)
	if err != nil {
		return nil, err
	}
	return &oauth2.Token{AccessToken: tok.AccessToken, TokenType: tok.TokenType, Expiry: tok.Expiry}, nil
}

// exchange posts a token-exchange request with the given subject (and
// actor) parameters for audience.
func (c *Client) exchange(ctx context.Context, form url.Values, audience string, scopes []string) (*Token, error) {
	te, err := c.endpoint(ctx)
	if err != nil {
		return nil, err
	}
	form.Set("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")
	form.Set("resource", audience)
	for _, p := range c.posture {
		a, err := p.Assertion(ctx)
		if err != nil {
			return nil, &Error{Step: StepPosture, Description: "posture source " + p.Name(), Err: err}
		}
		form.Add("posture_token", a)
	}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	start := c.now()
	status, body, err := c.post(ctx, te, form)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		var oe struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
			TraceID     string `json:"trace_id"`
		}
		json.Unmarshal(body, &oe)
		return nil, &Error{Step: StepExchange, Status: status, Code: oe.Error, Description: oe.Description, TraceID: oe.TraceID}
	}
	var tok Token
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" || tok.ExpiresIn <= 0 {
		return nil, &Error{Step: StepExchange, Status: status, Description: "the broker's answer is not a token response"}
	}
	tok.Expiry = start.Add(time.Duration(tok.ExpiresIn) * time.Second)
	return &tok, nil
}

// post sends a token request, with a DPoP proof when the client has a key:
// a use_dpop_nonce answer is retried once with the broker's nonce (RFC
// 9449 §8), which is kept for the next requests.
func (c *Client) post(ctx context.Context, endpoint string, form url.Values) (int, []byte, error) {
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if c.dpop != nil {
			c.mu.Lock()
			nonce := c.nonce
			c.mu.Unlock()
			proof, err := c.dpop.Proof(http.MethodPost, endpoint, "", nonce)
			if err != nil {
				return 0, nil, &Error{Step: StepConfig, Description: "DPoP proof", Err: err}
			}
			req.Header.Set(dpop.Header, proof)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return 0, nil, &Error{Step: StepExchange, Description: "the broker is unreachable", Err: err}
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if n := resp.Header.Get(dpop.NonceHeader); n != "" && c.dpop != nil {
			c.mu.Lock()
			c.nonce = n
			c.mu.Unlock()
			var oe struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(body, &oe) == nil && oe.Error == "use_dpop_nonce" && attempt == 0 {
				continue
			}
		}
		return resp.StatusCode, body, nil
	}
}

// IsUnreachable reports whether err means the broker could not be reached.
func IsUnreachable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == 0 && e.Err != nil && e.Step != StepEvidence
}
