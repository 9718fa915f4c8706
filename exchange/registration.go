package exchange

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/mtibben/confusables"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpsts/mcpsts/exchange/authorize"
)

// BrowserClients finds the clients of the browser flows: registered ones
// that may use the authorization code grant, and, when Documents is set,
// clients whose ID is the URL of their metadata document.
type BrowserClients struct {
	Registry  ClientRegistry
	Documents *ClientMetadataDocuments // nil: documents are not accepted
}

// DynamicClientPrefix begins the ID of every client registered dynamically
// (RFC 7591), and of no other: an administrator cannot give it.
const DynamicClientPrefix = "dcr-"

// BrowserClient implements authorize.Clients.
func (b BrowserClients) BrowserClient(ctx context.Context, id string) (authorize.Client, error) {
	if b.Registry != nil {
		c, ok, err := b.Registry.Client(ctx, id)
		switch {
		case err != nil:
			return authorize.Client{}, err
		case ok && !slices.Contains(c.GrantTypes, GrantAuthorizationCode):
			return authorize.Client{}, fmt.Errorf("%w: client %q is registered without the authorization_code grant", authorize.ErrUnknownClient, id)
		case ok:
			return authorize.Client{ID: c.ID, Name: c.Name, RedirectURIs: c.RedirectURIs, Unvetted: strings.HasPrefix(c.ID, DynamicClientPrefix)}, nil
		}
	}
	if b.Documents == nil || !IsClientMetadataURL(id) {
		return authorize.Client{}, fmt.Errorf("%w: %q is not registered", authorize.ErrUnknownClient, id)
	}
	md, err := b.Documents.Get(ctx, id)
	if err != nil {
		return authorize.Client{}, fmt.Errorf("%w: %v", authorize.ErrUnknownClient, err)
	}
	return authorize.Client{ID: md.ClientID, Name: md.ClientName, RedirectURIs: md.RedirectURIs, Document: true, Unvetted: true}, nil
}

// ClientRegistrar stores a client registered dynamically, in force at once.
type ClientRegistrar interface {
	RegisterClient(ctx context.Context, c Client) error
}

// clientNameProblem says why a client's self-declared name cannot be shown
// to people, or "": at most 128 bytes of one line of text, no markup, no
// control, format or bidirectional characters (which make a name read as
// another).
func clientNameProblem(name string) string {
	switch {
	case len(name) > 128 || strings.ContainsAny(name, "\x00\r\n<>"):
		return "at most 128 characters, one line"
	case strings.IndexFunc(name, func(r rune) bool { return unicode.In(r, unicode.Cc, unicode.Cf) }) >= 0:
		return "no control, format or bidirectional characters"
	}
	return ""
}

// registeredNames lists the names of the clients an administrator
// registered: a dynamic registration may not take one (the registry of
// serve does).
type registeredNames interface {
	RegisteredNames() []string
}

// sameName reports names that read alike: equal but for letter case,
// spaces and characters that look the same (Unicode's confusables).
func sameName(a, b string) bool {
	norm := func(s string) string {
		return strings.Join(strings.Fields(strings.ToLower(confusables.Skeleton(s))), "")
	}
	return norm(a) == norm(b)
}

// dynamicClients counts the clients registered dynamically (the registry
// of serve does), for the cap on them.
type dynamicClients interface {
	DynamicClients() int
}

// RegistrationConfig configures dynamic client registration.
type RegistrationConfig struct {
	Clients ClientRegistrar
	// PerSource limits registrations per source address (0: 10 a
	// minute, 10 at once).
	PerSource RateLimit
	// Overall limits registrations from all sources together (0: 1000
	// an hour, 1000 at once), so that many addresses cannot fill the
	// store.
	Overall RateLimit
	// MaxClients bounds the clients registered dynamically, when Clients
	// counts them (0: 10000).
	MaxClients int
	// SourcePrefixes are what PerSource keys on (an IPv6 /64 by default).
	SourcePrefixes SourcePrefixes
	Audit          DecisionLog // nil: none
	Log            *slog.Logger
	Clock          func() time.Time
}

// RegistrationHandler is Dynamic Client Registration (RFC 7591) for public
// clients only: the client gets an ID and no secret, may use the
// authorization code grant (and refresh), and returns only to redirect
// URIs that are https or loopback, matched exactly afterwards.
func RegistrationHandler(cfg RegistrationConfig) http.Handler {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.PerSource.Rate == 0 {
		cfg.PerSource = RateLimit{Rate: 10.0 / 60, Burst: 10}
	}
	if cfg.Overall.Rate == 0 {
		cfg.Overall = RateLimit{Rate: 1000.0 / 3600, Burst: 1000}
	}
	if cfg.MaxClients == 0 {
		cfg.MaxClients = 10_000
	}
	limit := newKeyedLimiter(cfg.PerSource, cfg.Clock)
	overall := newKeyedLimiter(cfg.Overall, cfg.Clock)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		md, oerr := register(r, limit, cfg.SourcePrefixes)
		if oerr == nil {
			oerr = cfg.room(overall)
		}
		if oerr == nil && md.ClientName != "" {
			if names, ok := cfg.Clients.(registeredNames); ok {
				for _, n := range names.RegisteredNames() {
					if sameName(n, md.ClientName) {
						oerr = fail(http.StatusBadRequest, "invalid_client_metadata", "client_name: the name of a client an administrator registered")
						break
					}
				}
			}
		}
		attrs := []attribute.KeyValue{attribute.String(attrSourceIP, sourceIP(r))}
		var c Client
		if oerr == nil {
			c = Client{ID: DynamicClientPrefix + authorize.Random(16), Name: md.ClientName, GrantTypes: []string{GrantAuthorizationCode},
				RedirectURIs: md.RedirectURIs, RegisteredAt: cfg.Clock().Unix()}
			if err := cfg.Clients.RegisterClient(r.Context(), c); err != nil {
				cfg.Log.Error("client registration", "error", err)
				oerr = storeUnavailable(err)
			}
			attrs = append(attrs, attribute.String(attrClientID, c.ID), attribute.String("mcpsts.client.name", bound(md.ClientName, maxAttrBytes)))
		}
		if oerr != nil {
			attrs = append(attrs, attribute.String(attrError, oerr.code), attribute.String(attrDenyReason, oerr.description))
		}
		if cfg.Audit != nil {
			name := "client.register"
			if oerr != nil {
				name = "client.register_refused"
			}
			if err := cfg.Audit.Decision(name, cfg.Clock(), trace.SpanContextFromContext(r.Context()), attrs); err != nil {
				cfg.Log.Error("audit log", "error", err)
			}
		}
		if oerr != nil {
			writeError(w, oerr, "")
			return
		}
		md.ClientID, md.TokenEndpointAuthMethod = c.ID, "none"
		md.GrantTypes, md.ResponseTypes = []string{GrantAuthorizationCode, GrantRefreshToken}, []string{"code"}
		noStore(w)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(struct {
			ClientMetadata
			IssuedAt int64 `json:"client_id_issued_at"`
		}{md, cfg.Clock().Unix()})
	})
}

// room refuses a registration when the registrations of every source
// together are past their rate, or the clients registered dynamically at
// their cap (until unused ones expire).
func (cfg *RegistrationConfig) room(overall *keyedLimiter) *oauthError {
	if n, ok := cfg.Clients.(dynamicClients); ok && n.DynamicClients() >= cfg.MaxClients {
		e := fail(http.StatusServiceUnavailable, "temporarily_unavailable", "this server holds as many dynamically registered clients as it allows; retry later")
		e.retryAfter = time.Minute
		return e
	}
	if ok, wait := overall.allow(""); !ok {
		e := fail(http.StatusTooManyRequests, "slow_down", "too many registrations; retry later")
		e.retryAfter = wait
		return e
	}
	return nil
}

// register reads and checks a registration request.
func register(r *http.Request, limit *keyedLimiter, prefixes SourcePrefixes) (ClientMetadata, *oauthError) {
	if r.Method != http.MethodPost {
		return ClientMetadata{}, fail(http.StatusMethodNotAllowed, errInvalidRequest, "registration takes POST")
	}
	if ok, wait := limit.allow(prefixes.key(r)); !ok {
		e := fail(http.StatusTooManyRequests, "slow_down", "too many registrations from this address; retry later")
		e.retryAfter = wait
		return ClientMetadata{}, e
	}
	var md ClientMetadata
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 16<<10))
	if err := dec.Decode(&md); err != nil {
		return ClientMetadata{}, fail(http.StatusBadRequest, "invalid_client_metadata", "the body must be a JSON client metadata document")
	}
	if len(md.RedirectURIs) == 0 {
		return ClientMetadata{}, fail(http.StatusBadRequest, "invalid_redirect_uri", "redirect_uris: at least one")
	}
	for i, u := range md.RedirectURIs {
		if p := redirectProblem(u); p != "" {
			return ClientMetadata{}, fail(http.StatusBadRequest, "invalid_redirect_uri", fmt.Sprintf("redirect_uris[%d]: %s", i, p))
		}
	}
	if m := md.TokenEndpointAuthMethod; m != "" && m != "none" {
		return ClientMetadata{}, fail(http.StatusBadRequest, "invalid_client_metadata", "token_endpoint_auth_method must be none: this server registers public clients only")
	}
	for _, g := range md.GrantTypes {
		if g != GrantAuthorizationCode && g != GrantRefreshToken {
			return ClientMetadata{}, fail(http.StatusBadRequest, "invalid_client_metadata", "grant_types: only authorization_code and refresh_token")
		}
	}
	for _, t := range md.ResponseTypes {
		if t != "code" {
			return ClientMetadata{}, fail(http.StatusBadRequest, "invalid_client_metadata", "response_types: only code")
		}
	}
	if p := clientNameProblem(md.ClientName); p != "" {
		return ClientMetadata{}, fail(http.StatusBadRequest, "invalid_client_metadata", "client_name: "+p)
	}
	return md, nil
}
