package trustmaps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/common/types"
	"github.com/agext/levenshtein"

	"github.com/mcpsts/mcpsts/attest"
)

// Request is what an identity asks for.
type Request struct {
	// Audience is the canonical resource URI of the MCP server the token is
	// for.
	Audience string
	// Scopes requested; none means the map's default scopes.
	Scopes    []string
	GrantType string
	// ClientID, when set, is the client the request is for (a browser
	// flow names it before the person signs in): only a map granting that
	// client decides. CEL sees it as request.client_id ("" otherwise).
	ClientID string
	// AuthorizationServer, when set, asks for an ID-JAG (SEP-990) naming
	// this authorization server's issuer: only a map that lists it in
	// grant.authorization_servers decides.
	AuthorizationServer string
	SourceIP            string
	// MTLS reports whether the client proved a certificate over TLS.
	MTLS bool
	Time time.Time
	// Context holds posture attributes given as such (the admin API's
	// explain); conditions read them as context.<name>.
	Context map[string]any
	// Posture is what each posture source said: the attributes of a
	// present one join Context under its name; a map that reads an
	// unavailable one is false.
	Posture []attest.Posture
}

// Decision is a grant: what the token minted for the request holds.
type Decision struct {
	MapID    string         `json:"map_id"`
	ClientID string         `json:"client_id"`
	Audience string         `json:"audience"`
	Scopes   []string       `json:"scopes"`
	TTL      time.Duration  `json:"-"` // 0: the issuer's default; "ttl" in JSON
	Claims   map[string]any `json:"claims,omitempty"`
	Binding  string         `json:"binding,omitempty"` // "", mtls or dpop
	// SingleUse: the token is valid for one use.
	SingleUse bool `json:"single_use,omitempty"`
}

// MarshalJSON writes the decision with snake_case names and its lifetime
// as a duration ("15m0s"; "" for the issuer's default).
func (d Decision) MarshalJSON() ([]byte, error) {
	type plain Decision
	ttl := ""
	if d.TTL > 0 {
		ttl = d.TTL.String()
	}
	return json.Marshal(struct {
		plain
		TTL string `json:"ttl,omitempty"`
	}{plain(d), ttl})
}

// Denial kinds; at the HTTP edge ErrInvalidScope is invalid_scope,
// ErrInvalidTarget is invalid_target and ErrDenied is the grant's refusal.
var (
	ErrDenied        = errors.New("trustmaps: denied")
	ErrInvalidScope  = errors.New("trustmaps: scope not granted")
	ErrInvalidTarget = errors.New("trustmaps: audience not granted")
)

// Denial explains a refusal. Reason is a short public code; Detail is for
// operators (audit spans), never for the client.
type Denial struct {
	Kind   error
	Reason string
	Detail string
}

func (d *Denial) Error() string { return d.Kind.Error() + ": " + d.Reason + ": " + d.Detail }
func (d *Denial) Unwrap() error { return d.Kind }

// Engine decides requests against a compiled set of maps. It is immutable
// and safe for concurrent use; replace it to change policy.
type Engine struct {
	env        *celEnv
	maps       []*compiled                       // by (priority, id)
	byProvider map[string][]*compiled            // every map of a provider, ordered
	exact      map[string]map[string][]*compiled // provider → subject → maps, ordered
	patterns   map[string][]*compiled            // provider → maps with a subject pattern, ordered

	resources  ResourceMemo
	readsPlace bool  // some map uses geolocation
	reads      reads // what all the maps read of context and place

	// The attributes the maps read, found once (ReferencedAttributes).
	refOnce  sync.Once
	refNames []string
	refAll   bool
}

func less(a, b *compiled) int {
	if a.Priority != b.Priority {
		return a.Priority - b.Priority
	}
	return strings.Compare(a.ID, b.ID)
}

func newEngine(env *celEnv, maps []*compiled) *Engine {
	slices.SortFunc(maps, less)
	e := &Engine{env: env, maps: maps, byProvider: map[string][]*compiled{},
		exact: map[string]map[string][]*compiled{}, patterns: map[string][]*compiled{}}
	for _, m := range maps {
		e.readsPlace = e.readsPlace || m.reads.place
		e.reads.merge(m.reads)
		p := m.Match.Provider
		e.byProvider[p] = append(e.byProvider[p], m)
		if m.subject != nil {
			e.patterns[p] = append(e.patterns[p], m)
			continue
		}
		if e.exact[p] == nil {
			e.exact[p] = map[string][]*compiled{}
		}
		e.exact[p][m.Match.Subject] = append(e.exact[p][m.Match.Subject], m)
	}
	return e
}

// Len is the number of maps.
func (e *Engine) Len() int { return len(e.maps) }

// Maps returns the maps in evaluation order.
func (e *Engine) Maps() []Map {
	out := make([]Map, len(e.maps))
	for i, m := range e.maps {
		out[i] = m.Map
	}
	return out
}

// candidates are the maps whose provider and subject match id, ordered;
// no CEL runs for any other map.
func (e *Engine) candidates(id attest.Identity) []*compiled {
	exact := e.exact[id.Provider][id.Subject]
	var matched []*compiled
	for _, m := range e.patterns[id.Provider] {
		if m.subject.MatchString(id.Subject) {
			matched = append(matched, m)
		}
	}
	if len(matched) == 0 {
		return exact
	}
	out := make([]*compiled, 0, len(exact)+len(matched))
	out = append(append(out, exact...), matched...)
	slices.SortFunc(out, less)
	return out
}

// activation is what expressions see.
func activation(id attest.Identity, r Request) map[string]any {
	attrs := id.Attributes
	if attrs == nil {
		attrs = map[string]any{}
	}
	scopes := r.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	ctx := r.Context
	if len(r.Posture) > 0 {
		ctx = maps.Clone(ctx)
		if ctx == nil {
			ctx = make(map[string]any, len(r.Posture))
		}
		for _, p := range r.Posture {
			if p.Status == attest.PosturePresent {
				ctx[p.Source] = p.Attributes
			}
		}
	}
	if ctx == nil {
		ctx = map[string]any{}
	}
	return map[string]any{
		"identity": map[string]any{
			"kind": id.Kind, "provider": id.Provider, "issuer": id.Issuer, "subject": id.Subject, "attributes": attrs,
		},
		"request": map[string]any{
			"audience": r.Audience, "scopes": scopes, "grant_type": r.GrantType, "client_id": r.ClientID,
			"source_ip": r.SourceIP, "mtls": r.MTLS, "time": r.Time,
		},
		"context": ctx,
	}
}

// outcome of one map for one request.
type outcome struct {
	decision   *Decision
	conditions []ConditionTrace
	reason     string // why the map did not decide
	kind       error  // ErrDenied, ErrInvalidTarget or ErrInvalidScope
	posture    bool   // it did not decide because a source it reads is unavailable
}

// evaluate applies one map. With all, every condition is evaluated (for
// Explain); otherwise evaluation stops at the first that does not hold.
func (m *compiled) evaluate(ctx context.Context, act map[string]any, r Request, all bool) outcome {
	var o outcome
	for _, p := range r.Posture {
		if p.Status == attest.PostureUnavailable && m.reads.readsSource(p.Source) {
			o.reason, o.kind, o.posture = fmt.Sprintf("posture source %q unavailable: %s", p.Source, p.Reason), ErrDenied, true
			return o
		}
	}
	holds := true
	for i, prg := range m.conditions {
		if !holds && !all {
			break
		}
		v, _, err := prg.ContextEval(ctx, act)
		ct := ConditionTrace{Expr: m.Match.Conditions[i]}
		switch {
		case err != nil:
			ct.Value = "error: " + err.Error()
			if holds {
				o.reason = fmt.Sprintf("condition %d failed: %v", i+1, err)
			}
			holds = false
		case v == types.True:
			ct.Value = "true"
		case v != types.False:
			ct.Value = fmt.Sprintf("error: gives %v, not a bool", v.Type())
			if holds {
				o.reason = fmt.Sprintf("condition %d failed: gives %v, not a bool", i+1, v.Type())
			}
			holds = false
		default:
			ct.Value = "false"
			if holds {
				o.reason = fmt.Sprintf("condition %d is false", i+1)
			}
			holds = false
		}
		o.conditions = append(o.conditions, ct)
	}
	if !holds {
		o.kind = ErrDenied
		return o
	}
	clientID := m.Grant.ClientID
	if m.clientID != nil {
		v, _, err := m.clientID.ContextEval(ctx, act)
		s, ok := v.(types.String)
		if err != nil || !ok || !clientIDPattern.MatchString(string(s)) {
			o.reason, o.kind = fmt.Sprintf("client_id_expr did not give a client id (%v)", errOr(err, v)), ErrDenied
			return o
		}
		clientID = string(s)
	}
	if r.ClientID != "" && clientID != r.ClientID {
		o.reason, o.kind = fmt.Sprintf("grants client %q, not %q", clientID, r.ClientID), ErrDenied
		return o
	}
	audience := r.Audience
	switch {
	case audience == "" && len(m.Grant.Audiences) == 1:
		audience = m.Grant.Audiences[0] // the map's single default
	case audience == "":
		o.reason, o.kind = "no audience requested and the map grants several", ErrInvalidTarget
		return o
	case !m.audiences[audience]:
		o.reason, o.kind = fmt.Sprintf("audience %q not granted", audience), ErrInvalidTarget
		return o
	}
	if as := r.AuthorizationServer; as != "" && !slices.Contains(m.Grant.AuthorizationServers, as) {
		o.reason, o.kind = fmt.Sprintf("authorization server %q not granted (ID-JAGs)", as), ErrInvalidTarget
		return o
	}
	scopes := r.Scopes
	if len(scopes) == 0 {
		scopes = m.Grant.DefaultScopes
	}
	for _, s := range scopes {
		if !m.scopes[s] {
			o.reason, o.kind = fmt.Sprintf("scope %q not granted", s), ErrInvalidScope
			return o
		}
	}
	binding := m.Grant.RequireBinding
	if binding == "none" {
		binding = ""
	}
	o.decision = &Decision{
		MapID: m.ID, ClientID: clientID, Audience: audience, Scopes: slices.Clone(scopes),
		TTL: m.Grant.MaxTTL, Claims: m.Grant.Claims, Binding: binding, SingleUse: m.Grant.SingleUse,
	}
	return o
}

func errOr(err error, v any) any {
	if err != nil {
		return err
	}
	return v
}

// Decide returns the decision of the first map, in priority order, whose
// match and conditions hold and whose grant covers the requested audience
// (compared in canonical form; none requested means the map's audience when
// it grants exactly one) and scopes. Otherwise it returns a *Denial: ErrInvalidTarget when maps
// matched but none granted the audience, ErrInvalidScope when one granted
// the audience but not the scopes, ErrDenied when no map matched.
func (e *Engine) Decide(ctx context.Context, id attest.Identity, r Request) (Decision, error) {
	if r.Audience != "" {
		canon, err := e.resources.Canonical(r.Audience)
		if err != nil {
			return Decision{}, &Denial{Kind: ErrInvalidTarget, Reason: "invalid_audience", Detail: err.Error()}
		}
		r.Audience = canon
	}
	cands := e.candidates(id)
	if len(cands) == 0 {
		return Decision{}, &Denial{Kind: ErrDenied, Reason: "no_matching_map", Detail: fmt.Sprintf("no map for provider %q and this subject", id.Provider)}
	}
	// What expressions see is built once, and only when a candidate has
	// one: most maps match on provider and subject alone.
	var act map[string]any
	for _, m := range cands {
		if len(m.conditions) > 0 || m.clientID != nil {
			act = activation(id, r)
			break
		}
	}
	var target, scope, posture *outcome
	for _, m := range cands {
		o := m.evaluate(ctx, act, r, false)
		switch {
		case o.decision != nil:
			return *o.decision, nil
		case o.posture && posture == nil:
			posture = &o
		case o.kind == ErrInvalidScope && scope == nil:
			scope = &o
		case o.kind == ErrInvalidTarget && target == nil:
			target = &o
		}
	}
	switch {
	case scope != nil:
		return Decision{}, &Denial{Kind: ErrInvalidScope, Reason: "scope_not_granted", Detail: scope.reason}
	case target != nil:
		return Decision{}, &Denial{Kind: ErrInvalidTarget, Reason: "audience_not_granted", Detail: target.reason}
	case posture != nil:
		return Decision{}, &Denial{Kind: ErrDenied, Reason: "no_matching_map", Detail: "no map's conditions hold (" + posture.reason + ")"}
	}
	return Decision{}, &Denial{Kind: ErrDenied, Reason: "no_matching_map", Detail: "no map's conditions hold"}
}

// Trace explains a decision: every map of the identity's provider, in
// order, with its conditions' values and why it did or did not decide.
type Trace struct {
	Provider string     `json:"provider"`
	Subject  string     `json:"subject"`
	Maps     []MapTrace `json:"maps"`
	Decision *Decision  `json:"decision,omitempty"`
	// Denial is the reason code when nothing was granted.
	Denial string `json:"denial,omitempty"`
	// Posture is what each posture source said, with the attributes the
	// evaluated maps read of it; never an assertion itself.
	Posture []PostureTrace `json:"posture,omitempty"`
	// Place is where the request came from, when an evaluated map reads it.
	Place *PlaceTrace `json:"place,omitempty"`
}

// PostureTrace is one posture source's part of a Trace.
type PostureTrace struct {
	attest.Posture
	// Age is how old the assertion or the fetched attributes were.
	Age string `json:"age,omitempty"`
	// Read lists the attributes the evaluated maps read ("*": all of them).
	Read []string `json:"read,omitempty"`
}

// PlaceTrace is the geolocation of the request's source address.
type PlaceTrace struct {
	SourceIP string `json:"source_ip"`
	Place
}

// MapTrace is one map's part of a Trace.
type MapTrace struct {
	ID         string           `json:"id"`
	Priority   int              `json:"priority"`
	Conditions []ConditionTrace `json:"conditions,omitempty"`
	// Outcome is "decided", or why the map did not decide.
	Outcome string `json:"outcome"`
}

// ConditionTrace is a condition and its value: true, false or error: ….
type ConditionTrace struct {
	Expr  string `json:"expr"`
	Value string `json:"value"`
}

// maxTraceMaps bounds a trace's size.
const maxTraceMaps = 200

// Explain evaluates the request like Decide and says why, map by map.
func (e *Engine) Explain(ctx context.Context, id attest.Identity, r Request) Trace {
	t := Trace{Provider: id.Provider, Subject: id.Subject}
	_, err := e.Decide(ctx, id, r)
	if d := (*Denial)(nil); errors.As(err, &d) {
		t.Denial = d.Reason
	}
	act := activation(id, r)
	decided := false
	var used reads
	for _, m := range e.byProvider[id.Provider] {
		if len(t.Maps) == maxTraceMaps {
			t.Maps = append(t.Maps, MapTrace{ID: "…", Outcome: fmt.Sprintf("%d more maps not shown", len(e.byProvider[id.Provider])-maxTraceMaps)})
			break
		}
		mt := MapTrace{ID: m.ID, Priority: m.Priority}
		switch {
		case m.subject == nil && m.Match.Subject != id.Subject, m.subject != nil && !m.subject.MatchString(id.Subject):
			mt.Outcome = "subject does not match"
		case decided:
			mt.Outcome = "not reached: an earlier map decided"
		default:
			used.merge(m.reads)
			o := m.evaluate(ctx, act, r, true)
			mt.Conditions = o.conditions
			if o.decision != nil {
				mt.Outcome, decided, t.Decision = "decided", true, o.decision
			} else {
				mt.Outcome = o.reason
			}
		}
		t.Maps = append(t.Maps, mt)
	}
	t.Posture, t.Place = e.traceInputs(used, r)
	return t
}

// traceInputs says what of posture and place the maps that were evaluated
// read.
func (e *Engine) traceInputs(used reads, r Request) ([]PostureTrace, *PlaceTrace) {
	var out []PostureTrace
	sources := r.Posture
	for _, name := range slices.Sorted(maps.Keys(r.Context)) { // given as such (admin explain)
		sources = append(sources, attest.Posture{Source: name, Status: "given"})
	}
	for _, p := range sources {
		pt := PostureTrace{Posture: p}
		if !p.IssuedAt.IsZero() && !r.Time.IsZero() {
			pt.Age = r.Time.Sub(p.IssuedAt).Round(time.Second).String()
		}
		switch {
		case used.contextAll:
			pt.Read = []string{"*"}
		case used.readsSource(p.Source):
			pt.Read = slices.Sorted(slices.Values(used.context[p.Source]))
			if pt.Read == nil {
				pt.Read = []string{"*"}
			}
		}
		out = append(out, pt)
	}
	if !used.place {
		return out, nil
	}
	p, ok := e.Place(r.SourceIP)
	if !ok {
		return out, &PlaceTrace{SourceIP: r.SourceIP}
	}
	return out, &PlaceTrace{SourceIP: r.SourceIP, Place: p}
}

// Place locates a source address with the engine's geolocation database;
// ok is false without one, or for an address that does not parse.
func (e *Engine) Place(sourceIP string) (p Place, ok bool) {
	addr, err := netip.ParseAddr(sourceIP)
	if e.env.places == nil || err != nil {
		return Place{}, false
	}
	return e.env.places.Place(addr.Unmap()), true
}

// ReadsContext reports whether some map reads posture source name.
func (e *Engine) ReadsContext(name string) bool { return e.reads.readsSource(name) }

// ReadsPlace reports whether some map uses geolocation.
func (e *Engine) ReadsPlace() bool { return e.readsPlace }

// MayAct reports whether actor may act for identities granted by map
// mapID (its may_act rules).
func (e *Engine) MayAct(mapID string, actor attest.Identity) bool {
	for _, m := range e.maps {
		if m.ID != mapID {
			continue
		}
		for _, a := range m.actors {
			if a.provider == actor.Provider && (a.pattern == nil && a.subject == actor.Subject || a.pattern != nil && a.pattern.MatchString(actor.Subject)) {
				return true
			}
		}
	}
	return false
}

// UnknownProviders reports every map that names a provider not in known, in
// match.provider or a may_act rule: it compiles, and never matches (a typo,
// a provider removed from the configuration). Each is a *Problem naming
// the document, line, map and field, with the known provider it was
// probably meant to be. None when every name is known.
func (e *Engine) UnknownProviders(known []string) []error {
	var out []error
	check := func(m *compiled, path, name string) {
		if slices.Contains(known, name) {
			return
		}
		msg := fmt.Sprintf("provider %q is not configured, so the map never matches", name)
		if near := nearest(name, known); near != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", near)
		} else if len(known) > 0 {
			msg += " (configured: " + strings.Join(known, ", ") + ")"
		}
		out = append(out, &Problem{Document: m.doc, Line: m.lineOf(path), MapID: m.ID, Path: path, Msg: msg})
	}
	for _, m := range e.maps {
		check(m, "match.provider", m.Match.Provider)
		for i, a := range m.Grant.MayAct {
			check(m, fmt.Sprintf("grant.may_act[%d].provider", i), a.Provider)
		}
	}
	return out
}

// nearest is the name of known within two edits of name, if one is.
func nearest(name string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := levenshtein.Distance(name, k, nil); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}
