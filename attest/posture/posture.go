// Package posture verifies what security-posture sources say about the
// workload of a request: signed assertions the agent pushes (from an
// endpoint-detection or compliance service) and attributes the broker pulls
// from an HTTPS endpoint for the verified identity. Like an attestor it
// reports facts and never authorizes: trust-map conditions read them as
// context.<source>.
//
// Every source fails closed: with OnError Deny (the default) a source that
// cannot be read or verified is unavailable, and every map that reads it is
// false; with Absent it is as if it had said nothing. There is no allow.
package posture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/federation"
)

// OnError is what a failing source means.
type OnError string

// The values of OnError.
const (
	Deny   OnError = "deny"
	Absent OnError = "absent"
)

// Limits of what a request may carry.
const (
	// MaxAssertions is the most posture assertions one request may carry.
	MaxAssertions = 8
	// MaxAssertionSize bounds one assertion, in bytes.
	MaxAssertionSize = oidc.MaxTokenSize
)

// AssertionConfig configures a source of signed posture assertions.
type AssertionConfig struct {
	Name string
	// Keys is the issuer: its exact iss, its key set and the algorithms
	// allowed.
	Keys *federation.Provider
	// Audience, when set, is the aud an assertion must carry.
	Audience string
	// MaxAge refuses assertions issued longer ago (default 1h).
	MaxAge time.Duration
	Leeway time.Duration // default 60s
	// Preset turns the issuer's claims into attributes; "generic" (the
	// only one, the default) keeps every claim.
	Preset string
	// BindClaim is the assertion's claim that names the workload or host
	// (default sub); BindIdentity is what of the verified identity it must
	// equal: "subject" or "attributes.<path>" (a dotted path into nested
	// attributes). BindProviders are the providers whose identities the
	// assertions describe: an identity from any other provider is not
	// bound, whatever its subject. An assertion about another host is
	// refused.
	BindClaim     string
	BindIdentity  string
	BindProviders []string
	OnError       OnError
}

// Set verifies the assertions of requests and pulls posture for their
// identities. It is immutable and safe for concurrent use.
type Set struct {
	now       func() time.Time
	verifier  *oidc.Verifier
	byIssuer  map[string]*assertionSource
	pulls     []*Pull
	sources   []string // every source, in configuration order
	onErrorOf map[string]OnError
}

type assertionSource struct {
	AssertionConfig
	bindPath []string // nil: the subject
}

// New builds a Set; every problem is reported at once.
func New(now func() time.Time, assertions []AssertionConfig, pulls []*Pull) (*Set, error) {
	if now == nil {
		now = time.Now
	}
	s := &Set{now: now, byIssuer: map[string]*assertionSource{}, pulls: pulls, onErrorOf: map[string]OnError{}}
	var errs []error
	add := func(name string, onError OnError) {
		if slices.Contains(s.sources, name) {
			errs = append(errs, fmt.Errorf("posture: source %q defined twice", name))
		}
		s.sources = append(s.sources, name)
		s.onErrorOf[name] = onError
	}
	var ocs []oidc.ProviderConfig
	for _, a := range assertions {
		if a.OnError == "" {
			a.OnError = Deny
		}
		if a.BindClaim == "" {
			a.BindClaim = "sub"
		}
		if a.MaxAge == 0 {
			a.MaxAge = time.Hour
		}
		add(a.Name, a.OnError)
		src := &assertionSource{AssertionConfig: a}
		switch {
		case a.Keys == nil:
			errs = append(errs, fmt.Errorf("posture: source %q: no issuer keys", a.Name))
			continue
		case a.BindIdentity == "subject":
		case strings.HasPrefix(a.BindIdentity, "attributes.") && len(a.BindIdentity) > len("attributes."):
			src.bindPath = strings.Split(strings.TrimPrefix(a.BindIdentity, "attributes."), ".")
		default:
			errs = append(errs, fmt.Errorf("posture: source %q: bind.identity %q: want subject or attributes.<name>", a.Name, a.BindIdentity))
		}
		if len(a.BindProviders) == 0 {
			errs = append(errs, fmt.Errorf("posture: source %q: bind.providers: name the providers whose identities its assertions describe", a.Name))
		}
		if a.Preset != "" && a.Preset != string(oidc.Generic) {
			errs = append(errs, fmt.Errorf("posture: source %q: preset %q: want generic", a.Name, a.Preset))
		}
		if _, dup := s.byIssuer[a.Keys.Issuer()]; dup {
			errs = append(errs, fmt.Errorf("posture: source %q: issuer %s belongs to another source", a.Name, a.Keys.Issuer()))
		}
		s.byIssuer[a.Keys.Issuer()] = src
		oc := oidc.ProviderConfig{Keys: a.Keys, MaxTokenAge: a.MaxAge, Leeway: a.Leeway, Preset: oidc.Generic, RequiredClaims: []string{a.BindClaim}}
		if a.Audience != "" {
			oc.Audiences = []string{a.Audience}
		} else {
			oc.NoAudience = true
		}
		ocs = append(ocs, oc)
	}
	for _, p := range pulls {
		add(p.cfg.Name, p.cfg.OnError)
	}
	v, err := oidc.New(now, ocs...)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.verifier = v
	return s, nil
}

// Sources lists the sources by name, in configuration order.
func (s *Set) Sources() []string { return slices.Clone(s.sources) }

// Evaluate verifies the assertions a request carries and pulls posture for
// its identity, and says what each source gave: one Posture per source
// that read reports as read (nil: every source), in configuration order,
// then one of status "ignored" per assertion that no source issued. A
// source that is not read is not asked and its assertions are not
// verified. It never fails: a failure is the failing source's status.
func (s *Set) Evaluate(ctx context.Context, id attest.Identity, assertions []string, read func(source string) bool) []attest.Posture {
	if len(s.sources) == 0 {
		return nil
	}
	wanted := func(name string) bool { return read == nil || read(name) }
	// When every assertion source is read, the verifier finds an
	// assertion's source by its issuer; otherwise it is found first, so
	// that an assertion for a source no map reads is not verified.
	allWanted := true
	for _, src := range s.byIssuer {
		allWanted = allWanted && wanted(src.Name)
	}
	out := make([]attest.Posture, 0, len(s.sources))
	got := map[string]attest.Posture{}
	var ignored []attest.Posture
	for i, raw := range assertions {
		var src *assertionSource
		if !allWanted {
			if src = s.route(raw); src == nil || !wanted(src.Name) {
				if src == nil {
					ignored = append(ignored, ignoredAssertion(i))
				}
				continue
			}
		}
		a, err := s.verifier.Attest(ctx, attest.Evidence{Token: []byte(raw)})
		switch {
		case err == nil:
			src = s.byIssuer[a.Issuer]
		case src == nil:
			src = s.route(raw) // to say which source failed
		}
		if src == nil {
			ignored = append(ignored, ignoredAssertion(i))
			continue
		}
		if _, seen := got[src.Name]; seen {
			got[src.Name] = s.failed(src.Name, "several_assertions", "more than one assertion of this source")
			continue
		}
		got[src.Name] = s.verified(src, id, a, err)
	}
	for _, p := range s.pulls {
		if wanted(p.cfg.Name) {
			got[p.cfg.Name] = p.get(ctx, id, s.now())
		}
	}
	for _, name := range s.sources {
		if !wanted(name) {
			continue
		}
		p, ok := got[name]
		if !ok {
			p = attest.Posture{Source: name, Status: attest.PostureAbsent, Reason: "no assertion sent"}
		}
		out = append(out, p)
	}
	return append(out, ignored...)
}

// route finds the source of an assertion by its issuer, read before the
// signature is verified (the verifier checks it again).
func (s *Set) route(raw string) *assertionSource {
	if len(raw) > MaxAssertionSize {
		return nil
	}
	var claims struct {
		Iss string `json:"iss"`
	}
	attest.UnverifiedSegment(raw, 1, &claims)
	return s.byIssuer[claims.Iss]
}

// failed is a source's failure, as its OnError says.
func (s *Set) failed(name, reason, detail string) attest.Posture {
	status := attest.PostureUnavailable
	if s.onErrorOf[name] == Absent {
		status = attest.PostureAbsent
	}
	if detail != "" {
		reason += ": " + detail
	}
	return attest.Posture{Source: name, Status: status, Reason: reason}
}

func ignoredAssertion(i int) attest.Posture {
	return attest.Posture{Source: "(none)", Status: "ignored", Reason: fmt.Sprintf("posture_token %d: its issuer is not a posture source", i+1)}
}

// verified is what an assertion of src, verified into a (or refused with
// err), says of the workload id.
func (s *Set) verified(src *assertionSource, id attest.Identity, a attest.Identity, err error) attest.Posture {
	if err != nil {
		var ae *attest.Error
		if errors.As(err, &ae) {
			return s.failed(src.Name, ae.Reason, ae.Detail)
		}
		return s.failed(src.Name, "invalid_assertion", "")
	}
	claim, _ := a.Attributes[src.BindClaim].(string)
	want, ok := src.bound(id)
	switch {
	case !slices.Contains(src.BindProviders, id.Provider):
		return s.failed(src.Name, "not_bound", fmt.Sprintf("the identity's provider %q is not one whose workloads this source describes (bind.providers)", id.Provider))
	case !ok:
		return s.failed(src.Name, "not_bound", fmt.Sprintf("the identity has no string %s to bind the assertion to", src.BindIdentity))
	case claim == "" || claim != want:
		return s.failed(src.Name, "not_bound", fmt.Sprintf("the assertion's %s is not the identity's %s: it is about another workload", src.BindClaim, src.BindIdentity))
	}
	p := attest.Posture{Source: src.Name, Status: attest.PosturePresent, Attributes: a.Attributes}
	switch iat := a.Attributes["iat"].(type) { // required by the verifier
	case float64:
		p.IssuedAt = time.Unix(int64(iat), 0)
	case json.Number:
		if n, err := iat.Int64(); err == nil {
			p.IssuedAt = time.Unix(n, 0)
		}
	}
	return p
}

// bound is the value of the identity that an assertion must name.
func (a *assertionSource) bound(id attest.Identity) (string, bool) {
	if a.bindPath == nil {
		return id.Subject, id.Subject != ""
	}
	var v any = id.Attributes
	for _, k := range a.bindPath {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		v = m[k]
	}
	s, ok := v.(string)
	return s, ok && s != ""
}
