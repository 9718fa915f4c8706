package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/mcpsts/mcpsts/federation"
)

// Client ID Metadata Documents (MCP authorization, the preferred way for a
// client to register): the client_id is an https URL, and the document at
// that URL describes the client. mcpsts fetches it, hardened, and trusts
// it only as far as it can check it.

// ClientMetadata is what a metadata document says of a client.
type ClientMetadata struct {
	ClientID                string   `json:"client_id"`
	ClientName              string   `json:"client_name"`
	RedirectURIs            []string `json:"redirect_uris"`
	ClientURI               string   `json:"client_uri,omitempty"`
	LogoURI                 string   `json:"logo_uri,omitempty"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
}

// ClientMetadataOptions configure ClientMetadataDocuments.
type ClientMetadataOptions struct {
	// Transport carries the fetches; nil: the default. Tests give one that
	// trusts their CA.
	Transport http.RoundTripper
	// AllowPrivateAddresses lets documents be fetched from loopback and
	// private addresses: tests only. Otherwise a client_id whose host
	// resolves to one is refused (SSRF).
	AllowPrivateAddresses bool
	// Clock is the time for the cache; nil: time.Now.
	Clock func() time.Time
}

// Bounds of the fetch and of the cache.
const (
	clientMetadataMaxBytes = 16 << 10
	clientMetadataTimeout  = 5 * time.Second
	clientMetadataMinTTL   = 5 * time.Minute
	clientMetadataMaxTTL   = 24 * time.Hour
	clientMetadataDefault  = time.Hour
	clientMetadataEntries  = 10_000
)

// ClientMetadataDocuments fetches and caches client metadata documents. It
// is safe for concurrent use.
type ClientMetadataDocuments struct {
	fetch *federation.Fetcher
	now   func() time.Time

	mu       sync.Mutex
	cache    map[string]cachedMetadata
	inFlight singleflight.Group // one fetch at a time per URL
}

// cachedMetadata is a document, or the failure to get one (err), until
// until.
type cachedMetadata struct {
	md    ClientMetadata
	err   error
	until time.Time
}

// failureTTL is how long a document that could not be had is not asked
// for again: a page of requests naming a dead or hostile URL costs one
// fetch.
const failureTTL = 30 * time.Second

// NewClientMetadataDocuments returns a fetcher of client metadata
// documents: https only, no redirect, at most 16 KiB within 5 s, public
// addresses only, cached as the response says within [5m, 24h] (1h when it
// says nothing).
func NewClientMetadataDocuments(o ClientMetadataOptions) *ClientMetadataDocuments {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &ClientMetadataDocuments{
		fetch: federation.NewFetcher(federation.FetcherOptions{Transport: o.Transport, Timeout: clientMetadataTimeout,
			MaxBytes: clientMetadataMaxBytes, NoRedirects: true, PublicOnly: !o.AllowPrivateAddresses}),
		now:   o.Clock,
		cache: map[string]cachedMetadata{},
	}
}

// IsClientMetadataURL reports whether clientID names a metadata document:
// an https URL (the other client IDs are registered or trust-map names).
func IsClientMetadataURL(clientID string) bool { return strings.HasPrefix(clientID, "https://") }

// ErrClientMetadata wraps every reason a document is refused.
var ErrClientMetadata = errors.New("client metadata document refused")

// Get returns the metadata of the client whose ID is the URL clientID.
func (d *ClientMetadataDocuments) Get(ctx context.Context, clientID string) (ClientMetadata, error) {
	if p := clientMetadataURLProblem(clientID); p != "" {
		return ClientMetadata{}, fmt.Errorf("%w: client_id %s", ErrClientMetadata, p)
	}
	now := d.now()
	d.mu.Lock()
	c, ok := d.cache[clientID]
	d.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.md, c.err
	}
	v, err, _ := d.inFlight.Do(clientID, func() (any, error) {
		c := cachedMetadata{until: now.Add(failureTTL)}
		resp, err := d.fetch.Get(ctx, clientID)
		if err == nil {
			c.md, err = parseClientMetadata(clientID, resp.Body)
			if err == nil {
				c.until = now.Add(cacheTTL(resp.Header))
			}
		}
		if err != nil {
			c.err = fmt.Errorf("%w: %v", ErrClientMetadata, err)
		}
		// A fetch the caller gave up on says nothing of the document.
		if ctx.Err() == nil {
			d.mu.Lock()
			if len(d.cache) >= clientMetadataEntries {
				clear(d.cache) // bounded; a cold cache costs fetches, not correctness
			}
			d.cache[clientID] = c
			d.mu.Unlock()
		}
		return c, nil
	})
	if err != nil {
		return ClientMetadata{}, err
	}
	c = v.(cachedMetadata)
	return c.md, c.err
}

// clientMetadataURLProblem says why u cannot be a client ID URL: https,
// a host, a path, no fragment, no user information, no dot segments.
func clientMetadataURLProblem(u string) string {
	p, err := url.Parse(u)
	switch {
	case err != nil || p.Scheme != "https" || p.Host == "":
		return fmt.Sprintf("%q is not an https URL", u)
	case p.Path == "" || p.Path == "/":
		return fmt.Sprintf("%q has no path", u)
	case p.Fragment != "" || strings.Contains(u, "#"):
		return fmt.Sprintf("%q has a fragment", u)
	case p.User != nil:
		return fmt.Sprintf("%q holds user information", u)
	case strings.Contains("/"+p.Path+"/", "/./") || strings.Contains("/"+p.Path+"/", "/../"):
		return fmt.Sprintf("%q has dot segments", u)
	}
	return ""
}

// parseClientMetadata checks a document fetched from clientID.
func parseClientMetadata(clientID string, body []byte) (ClientMetadata, error) {
	var md ClientMetadata
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&md); err != nil {
		return ClientMetadata{}, fmt.Errorf("not a JSON object: %v", err)
	}
	var errs []error
	if md.ClientID != clientID {
		errs = append(errs, fmt.Errorf("client_id: %q is not the document's URL %q", md.ClientID, clientID))
	}
	if md.ClientName == "" {
		errs = append(errs, errors.New("client_name: required"))
	} else if p := clientNameProblem(md.ClientName); p != "" {
		errs = append(errs, errors.New("client_name: "+p))
	}
	if len(md.RedirectURIs) == 0 {
		errs = append(errs, errors.New("redirect_uris: at least one"))
	}
	for i, u := range md.RedirectURIs {
		if p := redirectProblem(u); p != "" {
			errs = append(errs, fmt.Errorf("redirect_uris[%d]: %s", i, p))
		}
	}
	// Documents describe public clients: nothing here can hold a secret.
	if m := md.TokenEndpointAuthMethod; m != "" && m != "none" && m != "private_key_jwt" {
		errs = append(errs, fmt.Errorf("token_endpoint_auth_method: %q needs a secret, which a public document cannot hold", m))
	}
	return md, errors.Join(errs...)
}

// cacheTTL reads max-age from Cache-Control, bounded; no-store or no-cache
// count as the minimum.
func cacheTTL(h http.Header) time.Duration {
	ttl := clientMetadataDefault
	for _, d := range strings.Split(h.Get("Cache-Control"), ",") {
		d = strings.TrimSpace(strings.ToLower(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return clientMetadataMinTTL
		case strings.HasPrefix(d, "max-age="):
			var s int64
			if _, err := fmt.Sscanf(d, "max-age=%d", &s); err == nil && s >= 0 {
				ttl = time.Duration(s) * time.Second
			}
		}
	}
	return min(max(ttl, clientMetadataMinTTL), clientMetadataMaxTTL)
}
