// Package impact replays recorded trust-map decisions against proposed
// maps and reports who would gain and who would lose access: the blast
// radius of a change, from the decisions actually made. The token endpoint
// records what a replay needs in each decision's audit line (Identity,
// Request, Outcome); reading the audit log is internal/auditlog's.
package impact

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/internal/jsonstr"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// Identity is the part of a verified identity the maps read: provider,
// subject, kind, and the attributes the loaded maps referenced when the
// decision was made.
type Identity struct {
	Kind       string         `json:"kind,omitempty"`
	Provider   string         `json:"provider"`
	Issuer     string         `json:"issuer,omitempty"`
	Subject    string         `json:"subject"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// Request is the part of a token request the maps read.
type Request struct {
	GrantType           string   `json:"grant_type"`
	Audience            string   `json:"audience,omitempty"`
	Scopes              []string `json:"scopes,omitempty"`
	ClientID            string   `json:"client_id,omitempty"`
	AuthorizationServer string   `json:"authorization_server,omitempty"`
	SourceIP            string   `json:"source_ip,omitempty"`
	MTLS                bool     `json:"mtls,omitempty"`
}

// Outcome is what the maps decided: a grant, or a denial and its reason
// (no_matching_map, audience_not_granted, scope_not_granted).
type Outcome struct {
	Allowed   bool     `json:"allowed"`
	MapID     string   `json:"map,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Audience  string   `json:"audience,omitempty"`
	Scopes    []string `json:"scopes,omitempty"`
	TTL       int64    `json:"ttl,omitempty"` // seconds; 0: the issuer's default
	Binding   string   `json:"binding,omitempty"`
	SingleUse bool     `json:"single_use,omitempty"`
	Reason    string   `json:"reason,omitempty"`
}

// AppendJSON appends r as encoding/json writes it (on every decision the
// audit log records: no reflection).
func (r *Request) AppendJSON(b []byte) []byte {
	b = jsonstr.Append(append(b, `{"grant_type":`...), r.GrantType)
	if r.Audience != "" {
		b = jsonstr.Append(append(b, `,"audience":`...), r.Audience)
	}
	if len(r.Scopes) > 0 {
		b = jsonstr.AppendList(append(b, `,"scopes":`...), r.Scopes)
	}
	if r.ClientID != "" {
		b = jsonstr.Append(append(b, `,"client_id":`...), r.ClientID)
	}
	if r.AuthorizationServer != "" {
		b = jsonstr.Append(append(b, `,"authorization_server":`...), r.AuthorizationServer)
	}
	if r.SourceIP != "" {
		b = jsonstr.Append(append(b, `,"source_ip":`...), r.SourceIP)
	}
	if r.MTLS {
		b = append(b, `,"mtls":true`...)
	}
	return append(b, '}')
}

// AppendJSON appends o as encoding/json writes it.
func (o *Outcome) AppendJSON(b []byte) []byte {
	b = strconv.AppendBool(append(b, `{"allowed":`...), o.Allowed)
	for _, m := range []struct{ name, v string }{{"map", o.MapID}, {"client_id", o.ClientID}, {"audience", o.Audience}} {
		if m.v != "" {
			b = jsonstr.Append(append(append(append(b, `,"`...), m.name...), `":`...), m.v)
		}
	}
	if len(o.Scopes) > 0 {
		b = jsonstr.AppendList(append(b, `,"scopes":`...), o.Scopes)
	}
	if o.TTL != 0 {
		b = strconv.AppendInt(append(b, `,"ttl":`...), o.TTL, 10)
	}
	if o.Binding != "" {
		b = jsonstr.Append(append(b, `,"binding":`...), o.Binding)
	}
	if o.SingleUse {
		b = append(b, `,"single_use":true`...)
	}
	if o.Reason != "" {
		b = jsonstr.Append(append(b, `,"reason":`...), o.Reason)
	}
	return append(b, '}')
}

// AppendJSON appends id as encoding/json writes it; attributes, of any
// shape, are left to encoding/json.
func (id *Identity) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	if id.Kind != "" {
		b = jsonstr.Append(append(b, `"kind":`...), id.Kind)
		b = append(b, ',')
	}
	b = jsonstr.Append(append(b, `"provider":`...), id.Provider)
	if id.Issuer != "" {
		b = jsonstr.Append(append(b, `,"issuer":`...), id.Issuer)
	}
	b = jsonstr.Append(append(b, `,"subject":`...), id.Subject)
	if len(id.Attributes) > 0 {
		attrs, err := json.Marshal(id.Attributes)
		if err == nil {
			b = append(append(b, `,"attributes":`...), attrs...)
		}
	}
	return append(b, '}')
}

// OutcomeOf records a decision of the maps (d, or the denial err).
func OutcomeOf(d trustmaps.Decision, err error) Outcome {
	if err != nil {
		o := Outcome{Reason: "error"}
		var den *trustmaps.Denial
		if errors.As(err, &den) {
			o.Reason = den.Reason
		}
		return o
	}
	return Outcome{Allowed: true, MapID: d.MapID, ClientID: d.ClientID, Audience: d.Audience, Scopes: d.Scopes,
		TTL: int64(d.TTL / time.Second), Binding: d.Binding, SingleUse: d.SingleUse}
}

// Record is one recorded token decision. Replayable is false for a
// decision recorded without the replay fields (older lines, or decisions
// the maps made for an actor, not the recorded subject): it is counted,
// never guessed.
type Record struct {
	Line       int
	TraceID    string
	Time       time.Time
	Replayable bool
	Identity   Identity
	Request    Request
	Outcome    Outcome
}

// Options bound a replay.
type Options struct {
	// Since: only decisions at or after it (zero: all).
	Since time.Time
	// Before, when set, decides the "before" side again from these maps
	// (the store's current ones) instead of taking the recorded outcome.
	Before *trustmaps.Engine
}

// Kind of change.
const (
	Lose   = "lose"   // allowed before, denied now
	Gain   = "gain"   // denied before, allowed now
	Change = "change" // allowed both times, with another client, scopes, lifetime, binding or map
)

// Group is one change for one identity and request shape, counted.
type Group struct {
	Kind      string  `json:"kind"`
	Provider  string  `json:"provider"`
	Subject   string  `json:"subject"`
	GrantType string  `json:"grant_type"`
	Audience  string  `json:"audience"`
	ClientID  string  `json:"client_id,omitempty"`
	Scopes    string  `json:"scopes,omitempty"`
	Before    Outcome `json:"before"`
	After     Outcome `json:"after"`
	Count     int     `json:"count"`
	// Example is one such decision: its trace ID and time.
	ExampleTrace string    `json:"example_trace_id"`
	ExampleTime  time.Time `json:"example_time"`
	// What changed, in words: "scopes files:read → files:read files:write".
	Changes []string `json:"changes,omitempty"`
}

// Report is the result of a replay.
type Report struct {
	Lose          []Group `json:"lose"`
	Gain          []Group `json:"gain"`
	Change        []Group `json:"change"`
	Unchanged     int     `json:"unchanged"`
	NotReplayable int     `json:"not_replayable"`
	OutsideWindow int     `json:"outside_window"`
	Replayed      int     `json:"replayed"`
}

// AccessChanges reports whether anyone gains or loses access, or gets
// another grant.
func (r *Report) AccessChanges() bool { return len(r.Lose)+len(r.Gain)+len(r.Change) > 0 }

// Replay decides every replayable record of records again with after, at
// its recorded time, and reports the differences. It stops at the first
// error of records (a corrupted line) or when ctx is done.
func Replay(ctx context.Context, records iter.Seq2[Record, error], after *trustmaps.Engine, opt Options) (*Report, error) {
	rep := &Report{}
	groups := map[string]*Group{}
	n := 0
	for rec, err := range records {
		if err != nil {
			return nil, err
		}
		if n++; n%4096 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		switch {
		case !rec.Replayable:
			rep.NotReplayable++
			continue
		case !opt.Since.IsZero() && rec.Time.Before(opt.Since):
			rep.OutsideWindow++
			continue
		}
		rep.Replayed++
		id, req := rec.Identity.AsAttest(), rec.RequestAt()
		before := rec.Outcome
		if opt.Before != nil {
			before = OutcomeOf(opt.Before.Decide(ctx, id, req))
		}
		now := OutcomeOf(after.Decide(ctx, id, req))
		kind, changes := compare(before, now)
		if kind == "" {
			rep.Unchanged++
			continue
		}
		key := strings.Join([]string{kind, rec.Identity.Provider, rec.Identity.Subject, rec.Request.GrantType, rec.Request.Audience,
			rec.Request.ClientID, strings.Join(rec.Request.Scopes, " "), before.MapID, now.MapID, before.Reason, now.Reason, strings.Join(changes, ";")}, "\x00")
		g, ok := groups[key]
		if !ok {
			g = &Group{Kind: kind, Provider: rec.Identity.Provider, Subject: rec.Identity.Subject, GrantType: rec.Request.GrantType,
				Audience: rec.Request.Audience, ClientID: rec.Request.ClientID, Scopes: strings.Join(rec.Request.Scopes, " "),
				Before: before, After: now, ExampleTrace: rec.TraceID, ExampleTime: rec.Time, Changes: changes}
			groups[key] = g
		}
		g.Count++
	}
	for _, g := range groups {
		switch g.Kind {
		case Lose:
			rep.Lose = append(rep.Lose, *g)
		case Gain:
			rep.Gain = append(rep.Gain, *g)
		default:
			rep.Change = append(rep.Change, *g)
		}
	}
	for _, l := range [][]Group{rep.Lose, rep.Gain, rep.Change} {
		slices.SortFunc(l, func(a, b Group) int {
			if a.Count != b.Count {
				return b.Count - a.Count
			}
			return strings.Compare(a.Provider+"/"+a.Subject+" "+a.Audience, b.Provider+"/"+b.Subject+" "+b.Audience)
		})
	}
	return rep, nil
}

// AsAttest is the identity as the maps see it.
// Recorded are the attributes of attrs a decision's record keeps for a
// later replay: those named, or every one when all is set; nil when none.
// The token endpoint's audit lines and the browser grants (codes, refresh
// tokens) keep the same ones.
func Recorded(attrs map[string]any, names []string, all bool) map[string]any {
	var out map[string]any
	for k, v := range attrs {
		if all || slices.Contains(names, k) {
			if out == nil {
				out = map[string]any{}
			}
			out[k] = v
		}
	}
	return out
}

func (i Identity) AsAttest() attest.Identity {
	return attest.Identity{Kind: i.Kind, Provider: i.Provider, Issuer: i.Issuer, Subject: i.Subject, Attributes: i.Attributes}
}

// RequestAt is the recorded request, at its recorded time.
func (r Record) RequestAt() trustmaps.Request {
	return trustmaps.Request{Audience: r.Request.Audience, Scopes: r.Request.Scopes, GrantType: r.Request.GrantType, ClientID: r.Request.ClientID,
		AuthorizationServer: r.Request.AuthorizationServer, SourceIP: r.Request.SourceIP, MTLS: r.Request.MTLS, Time: r.Time}
}

// compare says how now differs from before: Lose, Gain, Change (with what
// changed) or "" for no difference.
func compare(before, now Outcome) (string, []string) {
	switch {
	case before.Allowed && !now.Allowed:
		return Lose, nil
	case !before.Allowed && now.Allowed:
		return Gain, nil
	case !before.Allowed:
		return "", nil
	}
	var changes []string
	diff := func(what, a, b string) {
		if a != b {
			changes = append(changes, fmt.Sprintf("%s %s → %s", what, orNone(a), orNone(b)))
		}
	}
	diff("client", before.ClientID, now.ClientID)
	diff("audience", before.Audience, now.Audience)
	diff("scopes", strings.Join(before.Scopes, " "), strings.Join(now.Scopes, " "))
	diff("lifetime", ttl(before.TTL), ttl(now.TTL))
	diff("binding", before.Binding, now.Binding)
	diff("single use", fmt.Sprint(before.SingleUse), fmt.Sprint(now.SingleUse))
	diff("map", before.MapID, now.MapID)
	if len(changes) == 0 {
		return "", nil
	}
	return Change, changes
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func ttl(s int64) string {
	if s == 0 {
		return "default"
	}
	return (time.Duration(s) * time.Second).String()
}
