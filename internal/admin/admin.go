// Package admin is the admin API, under /admin/v1/: trust maps kept in the
// store (list, read, create, replace, delete, with versions for optimistic
// concurrency), the explain endpoint, and the per-client consent registry
// (list, grant, revoke). Every request must be authorized
// (a broker token with the admin scope, or an administrator's client
// certificate); there is no static shared secret.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/consent"
)

// Config wires the admin API.
type Config struct {
	Repo trustmaps.Repository
	// Policy is the policy in force; it is reloaded after every write.
	Policy *trustmaps.Policy
	// Source is every map's source (files and the store): a write is
	// refused unless all maps, with the change, compile.
	Source trustmaps.Source
	// Consents is the per-client consent registry.
	Consents consent.Store
	// Revocations is the access-token revocation list (POST
	// /admin/v1/revocations); nil: not served. RevokeFor is how long a
	// revocation is kept: the longest token lifetime (0: 60m).
	Revocations Revoker
	RevokeFor   time.Duration
	// Metrics serves the metrics scrape (Prometheus text format) at
	// GET /admin/v1/metrics; nil serves none.
	Metrics http.Handler
	// Providers (trusted federation providers) and Clients (registered
	// MCP clients) are served at /admin/v1/providers and
	// /admin/v1/clients when set.
	Providers, Clients *Documents
	// PostureSources are served at /admin/v1/posture-sources.
	PostureSources *Documents
	Auth           Authorizer
	Log            *slog.Logger
	Clock          func() time.Time
	// AuditFile is the server's own audit log, which POST /admin/v1/impact
	// replays ("" : not served); it reads at most ImpactMaxBytes of its end
	// (0: 256 MiB) within ImpactTimeout (0: 30s).
	AuditFile      string
	ImpactMaxBytes int64
	ImpactTimeout  time.Duration
}

// maxBody bounds a request body.
const maxBody = 1 << 20

// Handler serves the admin API; mount it at /admin/v1/.
func Handler(cfg Config) http.Handler {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	a := &api{cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/v1/trust-maps", a.list)
	mux.HandleFunc("GET /admin/v1/trust-maps/{id}", a.get)
	mux.HandleFunc("PUT /admin/v1/trust-maps/{id}", a.put)
	mux.HandleFunc("DELETE /admin/v1/trust-maps/{id}", a.delete)
	mux.HandleFunc("POST /admin/v1/explain", a.explain)
	if cfg.AuditFile != "" {
		mux.HandleFunc("POST /admin/v1/impact", a.impact)
	}
	mux.HandleFunc("GET /admin/v1/consents", a.listConsents)
	mux.HandleFunc("POST /admin/v1/consents", a.grantConsent)
	mux.HandleFunc("DELETE /admin/v1/consents/{id}", a.revokeConsent)
	if cfg.Metrics != nil {
		mux.Handle("GET /admin/v1/metrics", cfg.Metrics)
	}
	if cfg.Revocations != nil {
		mux.HandleFunc("POST /admin/v1/revocations", a.revokeTokens)
	}
	if cfg.PostureSources != nil {
		documentAPI{a, cfg.PostureSources, "posture_source"}.mount(mux, "posture-sources")
	}
	if cfg.Providers != nil {
		documentAPI{a, cfg.Providers, "provider"}.mount(mux, "providers")
	}
	if cfg.Clients != nil {
		documentAPI{a, cfg.Clients, "client"}.mount(mux, "clients")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		_, pattern := mux.Handler(r)
		op, target := operation(pattern), path.Base(r.URL.Path)
		if !strings.Contains(pattern, "{id}") {
			target = ""
		}
		// The request's span (the server's) records who did what to what,
		// and how it ended: the audit trail of administrative changes.
		span := trace.SpanFromContext(r.Context())
		span.SetAttributes(attribute.String(AttrOperation, op), attribute.String(AttrTarget, target))
		principal, err := cfg.Auth.Authorize(r)
		switch {
		case errors.Is(err, ErrForbidden):
			span.SetAttributes(attribute.String(AttrResult, "forbidden"))
			a.fail(w, http.StatusForbidden, "forbidden", "the caller is not an administrator")
			return
		case errors.Is(err, ErrUnavailable):
			span.SetAttributes(attribute.String(AttrResult, "unavailable"))
			w.Header().Set("Retry-After", "5")
			a.fail(w, http.StatusServiceUnavailable, "unavailable", "the caller cannot be checked now; retry later")
			return
		case err != nil:
			span.SetAttributes(attribute.String(AttrResult, "unauthenticated"))
			w.Header().Set("WWW-Authenticate", `Bearer realm="mcpsts-admin", scope="`+Scope+`"`)
			a.fail(w, http.StatusUnauthorized, "unauthenticated", "a token with the admin scope or an administrator's client certificate is required")
			return
		}
		span.SetAttributes(attribute.String(AttrPrincipal, principal))
		cfg.Log.Info("admin request", "principal", principal, "method", r.Method, "path", r.URL.Path)
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		mux.ServeHTTP(sw, r)
		result := "ok"
		if sw.status >= 400 {
			result = "refused"
		}
		span.SetAttributes(attribute.String(AttrResult, result), attribute.Int("http.response.status_code", sw.status))
	})
}

// Attributes of an admin request's span.
const (
	AttrOperation = "mcpsts.admin.operation" // trust_map.put, consent.revoke, …
	AttrTarget    = "mcpsts.admin.target"    // the trust map or consent id
	AttrPrincipal = "mcpsts.admin.principal" // the administrator
	AttrResult    = "mcpsts.admin.result"    // ok, refused, unauthenticated, forbidden
)

// operation names a route of the API.
func operation(pattern string) string {
	switch pattern {
	case "GET /admin/v1/trust-maps":
		return "trust_map.list"
	case "GET /admin/v1/trust-maps/{id}":
		return "trust_map.get"
	case "PUT /admin/v1/trust-maps/{id}":
		return "trust_map.put"
	case "DELETE /admin/v1/trust-maps/{id}":
		return "trust_map.delete"
	case "POST /admin/v1/explain":
		return "explain"
	case "GET /admin/v1/consents":
		return "consent.list"
	case "POST /admin/v1/consents":
		return "consent.grant"
	case "DELETE /admin/v1/consents/{id}":
		return "consent.revoke"
	case "GET /admin/v1/metrics":
		return "metrics.scrape"
	case "POST /admin/v1/revocations":
		return "token.revoke"
	}
	for kind, singular := range map[string]string{"providers": "provider", "clients": "client", "posture-sources": "posture_source"} {
		switch pattern {
		case "GET /admin/v1/" + kind:
			return singular + ".list"
		case "GET /admin/v1/" + kind + "/{id}":
			return singular + ".get"
		case "PUT /admin/v1/" + kind + "/{id}":
			return singular + ".put"
		case "DELETE /admin/v1/" + kind + "/{id}":
			return singular + ".delete"
		}
	}
	return "unknown"
}

// IsChange reports whether an operation changes state.
func IsChange(op string) bool {
	switch op {
	case "trust_map.put", "trust_map.delete", "consent.grant", "consent.revoke",
		"provider.put", "provider.delete", "client.put", "client.delete", "token.revoke",
		"posture_source.put", "posture_source.delete":
		return true
	}
	return false
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

type api struct{ cfg Config }

// mapView is a stored map as the API shows it.
type mapView struct {
	ID        string          `json:"id"`
	Version   int64           `json:"version"`
	UpdatedAt time.Time       `json:"updated_at"`
	Map       json.RawMessage `json:"map"`
}

func view(r trustmaps.Record) mapView {
	return mapView{ID: r.ID, Version: r.Version, UpdatedAt: r.UpdatedAt, Map: json.RawMessage(r.Document)}
}

func (a *api) fail(w http.ResponseWriter, status int, code, msg string, problems ...string) {
	body := map[string]any{"error": code, "error_description": msg}
	if len(problems) > 0 {
		body["problems"] = problems
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	recs, err := a.cfg.Repo.Records(r.Context())
	if err != nil {
		a.internal(w, err)
		return
	}
	out := make([]mapView, len(recs))
	for i, rec := range recs {
		out[i] = view(rec)
	}
	writeJSON(w, http.StatusOK, map[string]any{"trust_maps": out})
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	rec, err := a.cfg.Repo.Record(r.Context(), r.PathValue("id"))
	if errors.Is(err, trustmaps.ErrNotFound) {
		a.fail(w, http.StatusNotFound, "not_found", "no trust map "+strconv.Quote(r.PathValue("id")))
		return
	}
	if err != nil {
		a.internal(w, err)
		return
	}
	w.Header().Set("ETag", etag(rec.Version))
	writeJSON(w, http.StatusOK, view(rec))
}

func etag(v int64) string { return `"` + strconv.FormatInt(v, 10) + `"` }

// version reads the precondition: If-Match "N" replaces version N,
// If-None-Match * creates. One of them is required, so that no write is
// blind.
func version(r *http.Request) (int64, error) {
	if r.Header.Get("If-None-Match") == "*" {
		return 0, nil
	}
	m := strings.Trim(r.Header.Get("If-Match"), `"`)
	v, err := strconv.ParseInt(m, 10, 64)
	if err != nil || v < 1 {
		return 0, errors.New(`send If-Match: "<version>" to replace, or If-None-Match: * to create`)
	}
	return v, nil
}

func (a *api) put(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ver, err := version(r)
	if err != nil {
		a.fail(w, http.StatusPreconditionRequired, "precondition_required", err.Error())
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		a.fail(w, http.StatusRequestEntityTooLarge, "too_large", "the map is larger than 1 MiB")
		return
	}
	var m struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		a.fail(w, http.StatusBadRequest, "invalid_trust_map", "the body is not a trust map in JSON: "+err.Error())
		return
	}
	if m.ID != id {
		a.fail(w, http.StatusBadRequest, "invalid_trust_map", fmt.Sprintf("the map's id %q is not the id in the path %q", m.ID, id))
		return
	}
	if problems := a.validate(r, id, body); problems != nil {
		a.fail(w, http.StatusBadRequest, "invalid_trust_map", "the trust maps would not compile with this change", problems...)
		return
	}
	rec, err := a.cfg.Repo.PutRecord(r.Context(), id, body, ver)
	if a.repoFailed(w, id, err, "the map changed since that version, or exists already") {
		return
	}
	a.reload(r)
	w.Header().Set("ETag", etag(rec.Version))
	status := http.StatusOK
	if ver == 0 {
		status = http.StatusCreated
	}
	writeJSON(w, status, view(rec))
}

// validate compiles every map with id's document replaced by doc (or
// removed when doc is nil) and returns the problems, or nil.
func (a *api) validate(r *http.Request, id string, doc []byte) []string {
	_, problems := a.with(r, map[string][]byte{id: doc})
	return problems
}

// with compiles every map with the store's maps of changes replaced by
// their documents (removed for a nil one), and returns the engine or the
// problems.
func (a *api) with(r *http.Request, changes map[string][]byte) (*trustmaps.Engine, []string) {
	docs, err := a.cfg.Source.Documents(r.Context())
	if err != nil {
		return nil, []string{"cannot read the current maps: " + err.Error()}
	}
	next := make([]trustmaps.Document, 0, len(docs)+len(changes))
	for _, d := range docs {
		if _, changed := changes[strings.TrimPrefix(d.Name, "store:")]; !changed || !strings.HasPrefix(d.Name, "store:") {
			next = append(next, d)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(changes)) {
		if doc := changes[id]; doc != nil {
			next = append(next, trustmaps.Document{Name: "store:" + id, Data: doc})
		}
	}
	e, err := a.cfg.Policy.Options().Compile(next...)
	if err != nil {
		return nil, strings.Split(err.Error(), "\n")
	}
	return e, nil
}

func (a *api) reload(r *http.Request) {
	if _, err := a.cfg.Policy.Reload(r.Context()); err != nil {
		a.cfg.Log.Error("trust maps written but not reloaded", "error", err)
	}
}

func (a *api) delete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ver, err := version(r)
	if err != nil || ver == 0 {
		a.fail(w, http.StatusPreconditionRequired, "precondition_required", `send If-Match: "<version>" to delete`)
		return
	}
	if problems := a.validate(r, id, nil); problems != nil {
		a.fail(w, http.StatusBadRequest, "invalid_trust_map", "the trust maps would not compile without this map", problems...)
		return
	}
	if a.repoFailed(w, id, a.cfg.Repo.DeleteRecord(r.Context(), id, ver), "the map changed since that version") {
		return
	}
	a.reload(r)
	w.WriteHeader(http.StatusNoContent)
}

// repoFailed answers a repository write's error, if any, and reports
// whether it did.
func (a *api) repoFailed(w http.ResponseWriter, id string, err error, conflict string) bool {
	switch {
	case errors.Is(err, trustmaps.ErrConflict):
		a.fail(w, http.StatusPreconditionFailed, "version_conflict", conflict)
	case errors.Is(err, trustmaps.ErrNotFound):
		a.fail(w, http.StatusNotFound, "not_found", "no trust map "+strconv.Quote(id))
	case err != nil:
		a.internal(w, err)
	default:
		return false
	}
	return true
}

// explainRequest is the body of POST /admin/v1/explain.
type explainRequest struct {
	Identity attest.Identity `json:"identity"`
	Request  struct {
		Audience  string         `json:"audience"`
		Scopes    []string       `json:"scopes"`
		GrantType string         `json:"grant_type"`
		SourceIP  string         `json:"source_ip"`
		MTLS      bool           `json:"mtls"`
		Time      time.Time      `json:"time"`
		Context   map[string]any `json:"context"`
	} `json:"request"`
}

func (a *api) explain(w http.ResponseWriter, r *http.Request) {
	var req explainRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		a.fail(w, http.StatusBadRequest, "invalid_request", "the body is not an explain request: "+err.Error())
		return
	}
	when := req.Request.Time
	if when.IsZero() {
		when = a.cfg.Clock()
	}
	tr := a.cfg.Policy.Engine().Explain(r.Context(), req.Identity, trustmaps.Request{
		Audience: req.Request.Audience, Scopes: req.Request.Scopes, GrantType: req.Request.GrantType,
		SourceIP: req.Request.SourceIP, MTLS: req.Request.MTLS, Time: when, Context: req.Request.Context,
	})
	writeJSON(w, http.StatusOK, tr)
}

func (a *api) listConsents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cs, err := a.cfg.Consents.Consents(r.Context(), q.Get("provider"), q.Get("user"), q.Get("client_id"))
	if err != nil {
		a.internal(w, err)
		return
	}
	if cs == nil {
		cs = []consent.Consent{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"consents": cs})
}

func (a *api) grantConsent(w http.ResponseWriter, r *http.Request) {
	var c consent.Consent
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		a.fail(w, http.StatusBadRequest, "invalid_consent", "the body is not a consent: "+err.Error())
		return
	}
	for i, res := range c.Resources {
		canon, err := trustmaps.CanonicalResource(res)
		if err != nil {
			a.fail(w, http.StatusBadRequest, "invalid_consent", fmt.Sprintf("resources[%d]: %v", i, err))
			return
		}
		c.Resources[i] = canon
	}
	if err := consent.Validate(c, a.cfg.Clock()); err != nil {
		a.fail(w, http.StatusBadRequest, "invalid_consent", "the consent is not valid", strings.Split(err.Error(), "\n")...)
		return
	}
	c, err := a.cfg.Consents.GrantConsent(r.Context(), c)
	if err != nil {
		a.internal(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

func (a *api) revokeConsent(w http.ResponseWriter, r *http.Request) {
	switch err := a.cfg.Consents.RevokeConsent(r.Context(), r.PathValue("id")); {
	case errors.Is(err, consent.ErrNotFound):
		a.fail(w, http.StatusNotFound, "not_found", "no consent "+strconv.Quote(r.PathValue("id")))
	case err != nil:
		a.internal(w, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// Revoker records revocations of access tokens (exchange.Revocations).
type Revoker interface {
	Revoke(ctx context.Context, kind, value string, at, until time.Time) error
}

// Revocation is a revocation request: exactly one of its fields.
type Revocation struct {
	JTI     string `json:"jti,omitempty"`
	Subject string `json:"subject,omitempty"`
	Client  string `json:"client,omitempty"`
}

// Kind and value of the one field set, or an error naming the problem.
func (r Revocation) Kind() (kind, value string, err error) {
	set := 0
	for k, v := range map[string]string{"jti": r.JTI, "subject": r.Subject, "client": r.Client} {
		if v != "" {
			set++
			kind, value = k, v
		}
	}
	if set != 1 {
		return "", "", errors.New("exactly one of jti, subject (a token's sub) and client (a client_id)")
	}
	return kind, value, nil
}

// revokeTokens adds to the revocation list: one token by jti, or every
// token of a subject or a client issued until now. Every replica refuses
// them from its next check (introspection, or a resource server that
// checks).
func (a *api) revokeTokens(w http.ResponseWriter, r *http.Request) {
	var rev Revocation
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rev); err != nil {
		a.fail(w, http.StatusBadRequest, "invalid_request", "the body must be a JSON revocation: "+err.Error())
		return
	}
	kind, value, err := rev.Kind()
	if err != nil {
		a.fail(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	trace.SpanFromContext(r.Context()).SetAttributes(attribute.String(AttrTarget, kind+":"+value))
	forHow := a.cfg.RevokeFor
	if forHow == 0 {
		forHow = time.Hour
	}
	now := a.cfg.Clock()
	if err := a.cfg.Revocations.Revoke(r.Context(), kind, value, now, now.Add(forHow)); err != nil {
		a.internal(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// internal answers 500 without internals; the error goes to the log.
func (a *api) internal(w http.ResponseWriter, err error) {
	a.cfg.Log.Error("admin API", "error", err)
	a.fail(w, http.StatusInternalServerError, "server_error", "internal error")
}
