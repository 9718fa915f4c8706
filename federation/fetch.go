package federation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Fetcher GETs the documents of trusted issuers: over HTTPS only, with a
// time limit and a size cap, following at most a few redirects and only
// within the same host. It is safe for concurrent use.
type Fetcher struct {
	client   *http.Client
	maxBytes int64
}

// FetcherOptions configure a Fetcher.
type FetcherOptions struct {
	// Transport carries the requests; nil means http.DefaultTransport.
	// Tests give one that trusts their issuer's CA.
	Transport http.RoundTripper
	Timeout   time.Duration // whole request; 0 means 10s
	MaxBytes  int64         // response body cap; 0 means 1 MiB
	// NoRedirects refuses every redirect: the document is at its URL or
	// nowhere (client metadata documents).
	NoRedirects bool
	// PublicOnly refuses to connect, after DNS resolution, to an address
	// that is not public unicast (loopback, private, link-local, shared
	// CGNAT, unique-local, unspecified, multicast): for URLs that a client
	// chose, which must not reach the broker's own network (SSRF). It
	// needs Transport to be nil or an *http.Transport.
	PublicOnly bool
}

const maxRedirects = 3

// NewFetcher returns a Fetcher.
func NewFetcher(o FetcherOptions) *Fetcher {
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 1 << 20
	}
	if o.PublicOnly {
		o.Transport = publicOnly(o.Transport)
	}
	return &Fetcher{
		maxBytes: o.MaxBytes,
		client: &http.Client{
			Transport: o.Transport,
			Timeout:   o.Timeout,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if o.NoRedirects {
					return fmt.Errorf("redirect to %s://%s refused: the document must be at its URL", req.URL.Scheme, req.URL.Host)
				}
				if len(via) >= maxRedirects {
					return fmt.Errorf("more than %d redirects", maxRedirects)
				}
				if req.URL.Scheme != "https" || req.URL.Host != via[0].URL.Host {
					return fmt.Errorf("redirect from %s to another host or scheme (%s://%s) refused", via[0].URL.Host, req.URL.Scheme, req.URL.Host)
				}
				return nil
			},
		},
	}
}

// publicOnly returns t (or the default transport) dialing only public
// unicast addresses: the check runs on the address actually dialed, after
// DNS resolution, so a name that resolves to a private address is refused
// too.
func publicOnly(t http.RoundTripper) http.RoundTripper {
	base, ok := t.(*http.Transport)
	if !ok {
		base = http.DefaultTransport.(*http.Transport)
	}
	tr := base.Clone()
	tr.Proxy = nil // a proxy would dial for us, unchecked
	d := &net.Dialer{Timeout: 10 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return err
		}
		if !publicAddress(ip.Unmap()) {
			return fmt.Errorf("%s is not a public address", ip)
		}
		return nil
	}}
	tr.DialContext = d.DialContext
	return tr
}

// notPublic are global unicast prefixes that reach other than the public
// address they seem to: the shared space of carrier-grade NAT (RFC 6598),
// NAT64 (RFC 6052: 64:ff9b::10.0.0.1 is 10.0.0.1 behind the translator),
// 6to4 (RFC 3056: 2002:0a00:0001:: is 10.0.0.1 behind the relay) and the
// deprecated IPv6 site-local space (RFC 3879).
func notPublic() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("64:ff9b::/96"),
		netip.MustParsePrefix("64:ff9b:1::/48"), netip.MustParsePrefix("2002::/16"), netip.MustParsePrefix("fec0::/10")}
}

func publicAddress(ip netip.Addr) bool {
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() &&
		!slices.ContainsFunc(notPublic(), func(p netip.Prefix) bool { return p.Contains(ip) })
}

// Response is a fetched document.
type Response struct {
	Body   []byte
	Header http.Header
}

// ErrFetch wraps every fetch failure.
var ErrFetch = errors.New("federation: fetch failed")

// Get fetches rawURL, which must be https, and returns its body when the
// status is 200 and the body is within the cap.
//
// A fetch made while serving a request is a child span of that request's
// span (federation.fetch): the tracer comes from the context's span, so a
// background refresh records none.
func (f *Fetcher) Get(ctx context.Context, rawURL string) (*Response, error) {
	return f.do(ctx, http.MethodGet, rawURL, nil)
}

// Post sends a JSON body to rawURL, which must be https, under the same
// rules as Get: the answer must be 200 and within the cap.
func (f *Fetcher) Post(ctx context.Context, rawURL string, body []byte) (*Response, error) {
	return f.do(ctx, http.MethodPost, rawURL, body)
}

func (f *Fetcher) do(ctx context.Context, method, rawURL string, reqBody []byte) (_ *Response, err error) {
	ctx, span := trace.SpanFromContext(ctx).TracerProvider().Tracer("mcpsts").Start(ctx, "federation.fetch",
		trace.WithAttributes(attribute.String("url.full", rawURL)))
	defer func() {
		if err != nil {
			span.SetStatus(codes.Error, "fetch failed")
		}
		span.End()
	}()
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%w: %q is not an https URL", ErrFetch, rawURL)
	}
	var rd io.Reader
	if reqBody != nil {
		rd = bytes.NewReader(reqBody)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	req.Header.Set("Accept", "application/json")
	if reqBody != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %v", ErrFetch, method, rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, f.maxBytes))
		return nil, fmt.Errorf("%w: %s %s: status %d", ErrFetch, method, rawURL, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %v", ErrFetch, method, rawURL, err)
	}
	if int64(len(body)) > f.maxBytes {
		return nil, fmt.Errorf("%w: %s %s: response larger than %d bytes", ErrFetch, method, rawURL, f.maxBytes)
	}
	return &Response{Body: body, Header: resp.Header}, nil
}
