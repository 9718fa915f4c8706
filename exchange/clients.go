package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/exchange/authorize"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// Client is a registered MCP client. Registration is optional: a client
// ID the trust maps give out works unregistered; a registered client may
// use only its grant types.
type Client struct {
	ID         string   `json:"client_id"`
	Name       string   `json:"name,omitempty"`
	GrantTypes []string `json:"grant_types"`
	// RedirectURIs are matched exactly by browser flows (none yet): https,
	// or http on a loopback address for native clients (RFC 8252 §7.3).
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	// RegisteredAt and FirstUsedAt (Unix seconds) are kept for clients
	// registered dynamically: one that got no token within the configured
	// time after its registration is removed.
	RegisteredAt int64 `json:"registered_at,omitempty"`
	FirstUsedAt  int64 `json:"first_used_at,omitempty"`
}

// GrantAuthorizationCode is the browser flow's grant, which registered
// clients may name for the flows to come.
const GrantAuthorizationCode = authorize.GrantAuthorizationCode

// ParseClient decodes a client document and checks every field, reporting
// all problems at once with their field paths.
func ParseClient(data []byte) (Client, error) {
	var c Client
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Client{}, fmt.Errorf("not a client document: %v", err)
	}
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("client_id: required"))
	}
	if len(c.GrantTypes) == 0 {
		errs = append(errs, errors.New("grant_types: at least one"))
	}
	for i, g := range c.GrantTypes {
		if !slices.Contains([]string{GrantTokenExchange, GrantJWTBearer, GrantClientCreds, GrantAuthorizationCode}, g) {
			errs = append(errs, fmt.Errorf("grant_types[%d]: %q is not a grant type of this server", i, g))
		}
	}
	for i, u := range c.RedirectURIs {
		if p := redirectProblem(u); p != "" {
			errs = append(errs, fmt.Errorf("redirect_uris[%d]: %s", i, p))
		}
	}
	return c, errors.Join(errs...)
}

// redirectProblem says why u cannot be a redirect URI, or "".
func redirectProblem(u string) string {
	p, err := url.Parse(u)
	switch {
	case err != nil || p.Host == "" || p.Opaque != "":
		return fmt.Sprintf("%q is not an absolute URL", u)
	case p.User != nil:
		return fmt.Sprintf("%q holds user information", u)
	case !authorize.RedirectHost(p.Hostname()) || strings.TrimLeft(p.Port(), "0123456789") != "":
		return fmt.Sprintf("%q: its host is neither a DNS name nor an IP address without a zone", u)
	case p.String() != u:
		return fmt.Sprintf("%q is not in its one written form (%q)", u, p.String())
	case p.Fragment != "" || strings.Contains(u, "#"):
		return fmt.Sprintf("%q has a fragment", u)
	case strings.Contains(u, "*"):
		return fmt.Sprintf("%q has a wildcard: redirect URIs are matched exactly", u)
	case p.Scheme == "https":
		return ""
	case p.Scheme == "http":
		if ip := net.ParseIP(p.Hostname()); (ip != nil && ip.IsLoopback()) || p.Hostname() == "localhost" {
			return ""
		}
		return fmt.Sprintf("%q is plain http on a host other than loopback", u)
	}
	return fmt.Sprintf("%q is not https", u)
}

// ClientRegistry finds registered clients. Client reports ok false for an
// unregistered ID. Implementations must be safe for concurrent use and
// cheap: it is called on every token request.
type ClientRegistry interface {
	Client(ctx context.Context, id string) (c Client, ok bool, err error)
}

// errClientGrant: the decided client is registered without this grant.
var errClientGrant = errors.New("the client may not use this grant type")

// registeredClients lets a decision stand only when its client, if
// registered, may use the request's grant type.
type registeredClients struct {
	Decider
	clients ClientRegistry
}

func (r registeredClients) Decide(ctx context.Context, id attest.Identity, req trustmaps.Request) (trustmaps.Decision, error) {
	d, err := r.Decider.Decide(ctx, id, req)
	if err != nil {
		return d, err
	}
	c, ok, err := r.clients.Client(ctx, d.ClientID)
	switch {
	case err != nil:
		return trustmaps.Decision{}, err
	case ok && !slices.Contains(c.GrantTypes, req.GrantType):
		return trustmaps.Decision{}, fmt.Errorf("%w: client %q, grant %s", errClientGrant, d.ClientID, req.GrantType)
	}
	return d, nil
}

// Explain passes through to the decider, so that denials keep their trace.
func (r registeredClients) Explain(ctx context.Context, id attest.Identity, req trustmaps.Request) trustmaps.Trace {
	if ex, ok := r.Decider.(explainer); ok {
		return ex.Explain(ctx, id, req)
	}
	return trustmaps.Trace{}
}
