package resource

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"

	"golang.org/x/oauth2"
)

// Errors of Delegate.
var (
	// ErrNoCaller: the context is not one of a request the middleware
	// verified.
	ErrNoCaller = errors.New("resource: no verified caller in the context")
	// ErrNoDelegator: the server was configured without a Delegator.
	ErrNoDelegator = errors.New("resource: this server has no Delegator configured")
)

// Caller is the verified caller of a request. It holds the incoming token
// for Delegate only: nothing returns it.
type Caller struct {
	Claims Claims
	raw    string
	server *Server
}

type callerKey struct{}

// CallerFromContext returns the verified caller of the request ctx belongs
// to.
func CallerFromContext(ctx context.Context) (*Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(*Caller)
	return c, ok && c != nil
}

// WithCaller returns ctx carrying c, for handlers that run in a context
// other than the request's (an MCP SDK's tool handlers, say).
func WithCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// Delegate gets a token for the downstream MCP server audience, for the
// caller of the request ctx belongs to, with this server as the actor: the
// broker mints a new token (act names this server) with no more scopes and
// no longer life than the incoming one. It is the only way to call another
// server on a caller's behalf: the incoming token is never forwarded.
func Delegate(ctx context.Context, audience string, scopes ...string) (*oauth2.Token, error) {
	c, ok := CallerFromContext(ctx)
	if !ok {
		return nil, ErrNoCaller
	}
	return c.Delegate(ctx, audience, scopes...)
}

// Delegate is [Delegate] for this caller.
func (c *Caller) Delegate(ctx context.Context, audience string, scopes ...string) (*oauth2.Token, error) {
	switch {
	case c.server.cfg.Delegator == nil:
		return nil, ErrNoDelegator
	case audience == c.server.cfg.Resource:
		return nil, errors.New("resource: a server cannot delegate to itself")
	}
	tok, err := c.server.cfg.Delegator.Delegate(ctx, c.raw, audience, scopes)
	if err != nil {
		return nil, errors.Join(errors.New("resource: delegation to "+audience+" failed"), err)
	}
	return tok, nil
}

// Middleware protects next: every request must carry a valid access token
// for this server in its Authorization header, with every scope in
// Config.Scopes, in scopes, and in Config.ToolScopes for each tool a
// tools/call in the body names. Handlers find the caller with
// CallerFromContext; the Authorization header is removed before next runs,
// so no handler can pass the token on.
func (s *Server) Middleware(next http.Handler, scopes ...string) http.Handler {
	route := dedupe(append(slices.Clone(s.cfg.Scopes), scopes...))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" && !s.origins[o] {
			s.reject(w, http.StatusForbidden, "", "the request's Origin is not allowed")
			return
		}
		if r.URL.RawQuery != "" && r.URL.Query().Has("access_token") {
			s.reject(w, http.StatusBadRequest, "invalid_request", "access tokens are accepted only in the Authorization header")
			return
		}
		scheme, raw, present, problem := s.credentials(r.Header)
		switch {
		case problem != "":
			s.reject(w, http.StatusBadRequest, "invalid_request", problem)
			return
		case !present:
			challenge := route
			if len(challenge) == 0 {
				challenge = s.first
			}
			s.challenge(w, http.StatusUnauthorized, "", "", challenge)
			return
		}
		claims, cnf, terr := s.verify(r.Context(), raw)
		if terr == nil {
			claims, terr = s.bind(r, scheme, raw, claims, cnf)
		}
		if terr == nil && s.introspect != nil {
			switch active, err := s.introspect.active(r.Context(), raw, claims, claims.SingleUse); {
			case err != nil:
				terr = &tokenError{description: "the token cannot be checked now", unavailable: true, err: err}
			case !active:
				terr = refuse("the token is no longer active (revoked, or a single-use token used before)", nil)
			}
		}
		if terr != nil {
			s.cfg.Log.Info("access token refused", "reason", terr.description, "detail", terr.err)
			if terr.unavailable {
				w.Header().Set("Retry-After", "5")
				desc := "the authorization server's keys cannot be loaded now"
				if errors.Is(terr.err, errIntrospection) {
					desc = "the authorization server cannot be asked about the token now"
				}
				s.reject(w, http.StatusServiceUnavailable, "temporarily_unavailable", desc)
				return
			}
			if terr.dpop != "" {
				s.challengeDPoP(w, http.StatusUnauthorized, terr.dpop, terr.description)
				return
			}
			s.challenge(w, http.StatusUnauthorized, "invalid_token", terr.description, nil)
			return
		}
		have := s.expand(claims.Scopes)
		needed := route
		var body []byte
		if r.Method == http.MethodPost && (len(s.tools) > 0 || s.cfg.ToolPolicy != nil) {
			var err error
			body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBodyLen))
			var tooBig *http.MaxBytesError
			switch {
			case errors.As(err, &tooBig):
				s.reject(w, http.StatusRequestEntityTooLarge, "invalid_request", "the request body is too large")
				return
			case err != nil:
				s.reject(w, http.StatusBadRequest, "invalid_request", "the request body could not be read")
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			// A request refused anyway is read too, so that its challenge
			// names every scope it needs.
			if !all(have, route) || s.mayCallUncovered(body, have) {
				tools, err := toolsCalled(body)
				if err != nil {
					s.reject(w, http.StatusBadRequest, "invalid_request", err.Error())
					return
				}
				if len(tools) > 0 {
					needed = slices.Clone(route) // route is shared by every request
					for _, t := range tools {
						needed = append(needed, s.cfg.ToolScopes[t]...)
					}
					needed = dedupe(needed)
				}
			}
		}
		if !all(have, needed) {
			s.challenge(w, http.StatusForbidden, "insufficient_scope", "the token lacks a scope this request needs", needed)
			return
		}
		if s.cfg.ToolPolicy != nil && body != nil && !s.decideCalls(w, r, body, &claims, raw, needed) {
			return
		}
		r2 := r.WithContext(WithCaller(r.Context(), &Caller{Claims: claims, raw: raw, server: s}))
		r2.Header = r.Header.Clone()
		r2.Header.Del("Authorization")
		if s.cfg.ToolPolicy != nil && body != nil && toolsListed(body) {
			// The caller sees the tools some call could be allowed for.
			f := &listFilter{ResponseWriter: w, keep: s.cfg.ToolPolicy.ShowTools(r.Context(),
				ToolCall{Caller: claims, Claims: allClaims(raw), Time: s.cfg.Clock(), SourceIP: sourceAddr(r)})}
			next.ServeHTTP(f, r2)
			f.finish()
			return
		}
		next.ServeHTTP(w, r2)
	})
}

// expand returns the granted scopes with every scope they imply.
func (s *Server) expand(granted []string) map[string]bool {
	have := make(map[string]bool, len(granted))
	queue := slices.Clone(granted)
	for len(queue) > 0 {
		sc := queue[0]
		queue = queue[1:]
		if !have[sc] {
			have[sc] = true
			queue = append(queue, s.cfg.Implies[sc]...)
		}
	}
	return have
}

func all(have map[string]bool, needed []string) bool {
	for _, n := range needed {
		if !have[n] {
			return false
		}
	}
	return true
}

// tool is a tool with scopes, and its name as the bytes a JSON string
// naming it holds when it has no escapes.
type tool struct {
	name   []byte
	scopes []string
}

// mayCallUncovered reports whether body could call a tool that needs a
// scope the caller lacks, so that only then is it read as JSON-RPC. A
// string without escapes holds its value's own bytes: a body with no
// backslash that does not contain such a tool's name cannot call it.
func (s *Server) mayCallUncovered(body []byte, have map[string]bool) bool {
	if bytes.IndexByte(body, '\\') >= 0 {
		return true
	}
	for _, t := range s.tools {
		for _, sc := range t.scopes {
			if !have[sc] {
				if bytes.Contains(body, t.name) {
					return true
				}
				break
			}
		}
	}
	return false
}

// challenge answers with a Bearer challenge (RFC 6750 §3, MCP
// authorization): the metadata URL always, the error when the request
// carried a token, the scopes the request needs.
func (s *Server) challenge(w http.ResponseWriter, status int, code, description string, scopes []string) {
	var params []string
	if code != "" {
		params = append(params, `error="`+code+`"`, `error_description="`+description+`"`)
	}
	if len(scopes) > 0 {
		params = append(params, `scope="`+strings.Join(scopes, " ")+`"`)
	}
	params = append(params, `resource_metadata="`+s.metaURL+`"`)
	w.Header().Set("WWW-Authenticate", "Bearer "+strings.Join(params, ", "))
	if s.proofs != nil {
		s.dpopChallenge(w, "", "")
	}
	s.reject(w, status, code, description)
}

// challengeDPoP answers a refusal of the DPoP kind: the error in the DPoP
// challenge, beside a Bearer challenge naming the metadata.
func (s *Server) challengeDPoP(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="`+s.metaURL+`"`)
	s.dpopChallenge(w, code, description)
	s.reject(w, status, code, description)
}

// reject writes an error answer: JSON with the OAuth code and a short
// public description, never cached.
func (s *Server) reject(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if code == "" && description == "" {
		description = "this server needs an access token from " + s.cfg.Issuer
	}
	json.NewEncoder(w).Encode(struct {
		Error       string `json:"error,omitempty"`
		Description string `json:"error_description,omitempty"`
	}{code, description})
}

func dedupe(ss []string) []string {
	var out []string
	for _, s := range ss {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
