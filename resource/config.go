package resource

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/oauth2"

	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/federation"
)

// KeySource returns the broker's public key kid for alg. It must be safe
// for concurrent use and cache: it is called on every request.
// *federation.Provider is one; an error wrapping federation.ErrNotReady
// means no key set can be had now (the request gets 503, not 401).
type KeySource interface {
	Key(ctx context.Context, kid, alg string) (crypto.PublicKey, error)
}

// Delegator performs a delegation token exchange (RFC 8693) at the broker:
// subjectToken is the incoming access token, the actor is the server's own
// workload identity, and the answer is a new token for audience.
// *client.Client (exchange/client) is one.
type Delegator interface {
	Delegate(ctx context.Context, subjectToken, audience string, scopes []string) (*oauth2.Token, error)
}

// Config configures a protected MCP server.
type Config struct {
	// Resource is this server's canonical resource URI, the MCP endpoint's
	// URL (https://mcp.example.com/mcp): every token's aud must be exactly
	// this, and the metadata's resource is this.
	Resource string
	// Issuer is the broker's issuer URL, matched exactly against iss.
	Issuer string
	// Keys verify signatures. Nil means the broker's keys through OIDC
	// discovery of Issuer, cached (see [Server.Run]).
	Keys KeySource
	// Transport carries discovery and JWKS requests when Keys is nil
	// (nil: http.DefaultTransport). Trust a private CA through it.
	Transport http.RoundTripper
	// Algorithms allowed for access tokens (default ES256, EdDSA, RS256).
	Algorithms []string
	// Leeway tolerated on exp, nbf and iat (default 30s, at most 5m).
	Leeway time.Duration

	// Scopes every request needs; routes may add more (see Middleware).
	Scopes []string
	// ToolScopes are the scopes each MCP tool needs, by tool name, on top
	// of the route's: a tools/call for the tool needs all of them.
	ToolScopes map[string][]string
	// Implies lists, for a broad scope, the narrower scopes it implies
	// (files:write implies files:read); it is applied transitively.
	Implies map[string][]string
	// ScopesSupported goes into the metadata; nil means every scope named
	// in Scopes, ToolScopes and Implies.
	ScopesSupported []string
	// FirstScopes are what a request without a token is told to get, in
	// the scope of its 401 challenge, when its route needs none: what a
	// first call needs. MCP clients ask for the challenge's scopes and
	// step up on a 403 insufficient_scope, so a person consents to more
	// only when a call needs it. Nil means ScopesSupported.
	FirstScopes []string
	// ResourceName is the human-readable name in the metadata.
	ResourceName string

	// AllowedOrigins are the browser origins allowed besides the
	// resource's own; a request with any other Origin header gets 403.
	AllowedOrigins []string
	// MaxBodyBytes caps a request body read to find the MCP tool called
	// (default 4 MiB); a bigger body gets 413.
	MaxBodyBytes int64

	// CacheSize bounds the verified-token cache (default 10000 tokens; -1
	// disables it). A cached token is re-checked on every use: its times,
	// that its key is still published, its binding to the connection.
	CacheSize int

	// DPoP accepts DPoP-bound tokens; nil: bearer and certificate-bound
	// tokens only (a DPoP-bound one is refused).
	DPoP *DPoP
	// Introspection checks every token with the broker (revocation,
	// single use); nil: off.
	Introspection *Introspection

	// Delegator performs Delegate; nil means this server cannot delegate.
	Delegator Delegator

	// ToolPolicy, when set, decides every tools/call on its tool, its
	// arguments and its caller (toolpolicy.Server.ForResource), after the
	// scopes allowed it.
	ToolPolicy ToolPolicy
	// ToolDecisions, when set, is told every tool-call decision of
	// ToolPolicy (mcpsts gateway writes each to its audit log).
	ToolDecisions func(ctx context.Context, call ToolCall, d ToolDecision)

	Clock func() time.Time // nil means time.Now
	Log   *slog.Logger     // nil discards
}

// Server protects one MCP endpoint. It is safe for concurrent use.
type Server struct {
	cfg        Config
	keys       KeySource
	runner     interface{ Run(context.Context) }
	metaURL    string // path-inserted metadata URL
	metaPath   string // its path
	origin     string // the resource's own origin
	origins    map[string]bool
	supported  []string
	first      []string // a 401 challenge's scopes when the route needs none
	metadata   []byte
	validAlgs  []string
	maxBodyLen int64
	jwtParser  *jwt.Parser
	cache      *lru.Cache[[32]byte, verified] // nil when disabled
	tools      []tool                         // Config.ToolScopes
	proofs     *dpop.Verifier                 // nil without Config.DPoP
	introspect *introspector                  // nil without Config.Introspection
	proofAlgs  []string
}

const (
	defaultLeeway    = 30 * time.Second
	maxLeeway        = 5 * time.Minute
	defaultMaxBody   = 4 << 20
	wellKnown        = "/.well-known/oauth-protected-resource"
	defaultCacheSize = 10000
)

// New validates cfg and returns a Server. It does no I/O: the broker's
// keys load on first use or in Run.
func New(cfg Config) (*Server, error) {
	var errs []error
	problem := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("Config.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	res, err := url.Parse(cfg.Resource)
	if p := resourceProblem(cfg.Resource, res, err); p != "" {
		problem("Resource", "%s", p)
	}
	if u, err := url.Parse(cfg.Issuer); err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		problem("Issuer", "%q is not an https URL without query or fragment", cfg.Issuer)
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{"ES256", "EdDSA", "RS256"}
	}
	for _, a := range cfg.Algorithms {
		if !slices.Contains(federation.SupportedAlgorithms(), a) {
			problem("Algorithms", "%q is not allowed (want some of %s)", a, strings.Join(federation.SupportedAlgorithms(), ", "))
		}
	}
	switch {
	case cfg.Leeway == 0:
		cfg.Leeway = defaultLeeway
	case cfg.Leeway < 0 || cfg.Leeway > maxLeeway:
		problem("Leeway", "%s is outside [0, %s]", cfg.Leeway, maxLeeway)
	}
	scopes := slices.Clone(cfg.Scopes)
	for tool, ss := range cfg.ToolScopes {
		if tool == "" {
			problem("ToolScopes", "a tool name is empty")
		}
		scopes = append(scopes, ss...)
	}
	for broad, narrow := range cfg.Implies {
		scopes = append(append(scopes, broad), narrow...)
	}
	for _, s := range slices.Concat(scopes, cfg.ScopesSupported, cfg.FirstScopes) {
		if !validScope(s) {
			problem("Scopes", "%q is not a scope token (RFC 6749 §3.3)", s)
		}
		if s == "offline_access" {
			problem("Scopes", "offline_access is not for MCP servers: their tokens are never refreshed through them")
		}
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = defaultMaxBody
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("resource: %w", err)
	}

	s := &Server{cfg: cfg, keys: cfg.Keys, validAlgs: cfg.Algorithms, maxBodyLen: cfg.MaxBodyBytes}
	if s.keys == nil {
		p, err := federation.NewProvider(federation.ProviderConfig{
			Name: "broker", Issuer: cfg.Issuer, Discovery: true, Algorithms: cfg.Algorithms,
			Fetcher: federation.NewFetcher(federation.FetcherOptions{Transport: cfg.Transport}),
			Clock:   cfg.Clock, Log: cfg.Log,
		})
		if err != nil {
			return nil, fmt.Errorf("resource: broker keys: %w", err)
		}
		s.keys, s.runner = p, p
	}
	s.origin = res.Scheme + "://" + res.Host
	s.metaPath = wellKnown + strings.TrimSuffix(res.EscapedPath(), "/")
	s.metaURL = s.origin + s.metaPath
	s.origins = map[string]bool{s.origin: true}
	for _, o := range cfg.AllowedOrigins {
		s.origins[o] = true
	}
	s.supported = cfg.ScopesSupported
	if s.supported == nil {
		slices.Sort(scopes)
		s.supported = slices.Compact(scopes)
	}
	s.first = cfg.FirstScopes
	if s.first == nil {
		s.first = s.supported
	}
	if d := cfg.DPoP; d != nil {
		replay := d.Replay
		if replay == nil {
			replay = newMemoryReplay(d.ProofCacheSize, cfg.Clock)
		}
		s.proofs, s.proofAlgs = &dpop.Verifier{Replay: replay, Nonces: d.Nonces, Clock: cfg.Clock}, dpop.Algorithms
	}
	if in := cfg.Introspection; in != nil {
		if u, err := url.Parse(in.URL); err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("resource: Config.Introspection.URL: %q is not an https URL", in.URL)
		}
		s.introspect = newIntrospector(*in, cfg.Transport, cfg.Clock)
	}
	s.metadata = s.buildMetadata()
	for name, scopes := range cfg.ToolScopes {
		if len(scopes) > 0 {
			s.tools = append(s.tools, tool{name: []byte(name), scopes: scopes})
		}
	}
	s.jwtParser = s.parser()
	if _, ok := s.keys.(keyChecker); ok && cfg.CacheSize >= 0 {
		if cfg.CacheSize == 0 {
			cfg.CacheSize = defaultCacheSize
		}
		s.cache, _ = lru.New[[32]byte, verified](cfg.CacheSize)
	}
	return s, nil
}

// resourceProblem says why s is not a canonical resource URI (RFC 8707 as
// the broker compares audiences), or "".
func resourceProblem(s string, u *url.URL, err error) string {
	switch {
	case err != nil || u.Scheme != "https" || u.Host == "" || u.Opaque != "":
		return fmt.Sprintf("%q is not an absolute https URL", s)
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || strings.Contains(s, "#"):
		return fmt.Sprintf("%q may not hold user information, a query or a fragment", s)
	case u.Host != strings.ToLower(u.Host) || u.Port() == "443" || u.Path == "/":
		return fmt.Sprintf("%q is not canonical: write the host in lower case, without :443 and without a lone trailing slash", s)
	}
	return ""
}

// validScope reports whether s is a scope token: printable ASCII without
// space, double quote or backslash.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// Run keeps the broker's key set fresh until ctx is done, when the keys
// come from discovery. Without it, keys load on first use and a set past
// its refresh time keeps serving only up to its stale bound.
func (s *Server) Run(ctx context.Context) {
	if s.runner != nil {
		s.runner.Run(ctx)
	}
}

// Ready reports whether the server can verify tokens now (the broker's
// keys are loaded and not stale beyond their bound), for a readiness probe.
func (s *Server) Ready() error {
	if r, ok := s.keys.(interface{ Ready() error }); ok {
		return r.Ready()
	}
	return nil
}

// Resource returns the canonical resource URI this server accepts.
func (s *Server) Resource() string { return s.cfg.Resource }
