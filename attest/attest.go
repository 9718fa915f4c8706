// Package attest turns the evidence a workload presents (a platform JWT, a
// signed cloud request, a certificate chain) into a verified Identity. An
// attestor reports facts; it never authorizes: that is the trust maps' job.
//
// Each source has its own sub-package (attest/oidc, …) holding the server's
// verifier and, where there is one, the agent's evidence builder.
package attest

import (
	"context"
	"crypto/x509"
	"errors"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Evidence is what a workload presented.
type Evidence struct {
	// Type is the token type URI it came as (RFC 8693 subject_token_type,
	// or the JWT bearer grant's urn:ietf:params:oauth:grant-type:jwt-bearer).
	Type string
	// Token is the credential itself. Never log it.
	Token []byte
	// PeerCertificates is the TLS client chain, when there was one.
	PeerCertificates []*x509.Certificate
}

// Identity is a verified workload identity.
type Identity struct {
	Kind     string `json:"kind,omitempty"`   // the attestor's kind: "oidc", …
	Provider string `json:"provider"`         // the configured provider that vouched for it
	Issuer   string `json:"issuer,omitempty"` //
	Subject  string `json:"subject"`          //
	// Attributes are the claims or platform facts (namespace, repository,
	// account…), nested where the source nests them.
	Attributes map[string]any `json:"attributes,omitempty"`
	// Expiry is when the evidence stops being valid.
	Expiry time.Time `json:"expiry,omitzero"`
	// ReplayKey is non-empty when the evidence must be used only once: it is
	// claimed until Expiry (see SingleUse).
	ReplayKey string `json:"-"`
	// ClaimLater: the caller claims ReplayKey once the request it came
	// with is otherwise authenticated (an ID-JAG, which only its client may
	// use up); SingleUse leaves it unclaimed.
	ClaimLater bool `json:"-"`
	// CertThumbprint is the x5t#S256 of a certificate proven over mTLS.
	CertThumbprint string `json:"cert_thumbprint,omitempty"`
}

// Attestor verifies one kind of evidence. Implementations must be safe for
// concurrent use. Attest returns an error wrapping ErrInvalidEvidence when
// the evidence is not acceptable (the caller answers invalid_request or
// invalid_grant), ErrUnavailable when it could not decide for now (the
// issuer's keys are unreachable), or another error for an internal fault.
type Attestor interface {
	Attest(ctx context.Context, ev Evidence) (Identity, error)
}

// Sentinels that every attestor's errors wrap.
var (
	ErrInvalidEvidence = errors.New("attest: invalid evidence")
	ErrUnavailable     = errors.New("attest: cannot verify now")
	// ErrReplayed is returned when single-use evidence is presented again,
	// and by ReplayCache.Claim for a key that is held.
	ErrReplayed = errors.New("attest: evidence already used")
)

// Error is an attestation failure. Reason is a short public code (safe to
// show a client, e.g. "token_expired"); Detail is for logs and audit spans
// and never holds the evidence itself.
type Error struct {
	Kind   error // ErrInvalidEvidence, ErrUnavailable or ErrReplayed
	Reason string
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return e.Kind.Error() + ": " + e.Reason
	}
	return e.Kind.Error() + ": " + e.Reason + ": " + e.Detail
}

func (e *Error) Unwrap() error { return e.Kind }

// Invalid returns an *Error of kind ErrInvalidEvidence.
func Invalid(reason, detail string) error {
	return &Error{Kind: ErrInvalidEvidence, Reason: reason, Detail: detail}
}

// ReasonOf returns the public reason code of err, or "" when it has none.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// ReplayCache makes evidence single-use: a key can be claimed once until a
// given time.
//
// Implementations must be safe for concurrent use, including by several
// processes sharing one backing store: of two concurrent claims of the same
// unexpired key exactly one succeeds. Claim returns nil when the key is now
// claimed by the caller, an error wrapping ErrReplayed when an earlier claim
// holds it, and any other error when the cache could not decide (the
// evidence must then be refused). A claim whose time has passed no longer
// holds the key. Implementations must not keep the key in clear: it may be
// derived from a credential.
type ReplayCache interface {
	Claim(ctx context.Context, key string, until time.Time) error
}

// SingleUse wraps an attestor: an identity that carries a ReplayKey is
// claimed in cache until its Expiry, and a second presentation fails with
// ErrReplayed; one marked ClaimLater is its caller's to claim.
func SingleUse(a Attestor, cache ReplayCache) Attestor {
	return singleUse{a, cache}
}

type singleUse struct {
	Attestor
	cache ReplayCache
}

func (s singleUse) Attest(ctx context.Context, ev Evidence) (Identity, error) {
	id, err := s.Attestor.Attest(ctx, ev)
	if err != nil || id.ReplayKey == "" || id.ClaimLater {
		return id, err
	}
	_, span := trace.SpanFromContext(ctx).TracerProvider().Tracer("mcpsts").Start(ctx, "replay.claim")
	err = s.cache.Claim(ctx, id.ReplayKey, id.Expiry)
	if err != nil {
		span.SetStatus(codes.Error, "not claimed")
	}
	span.End()
	switch {
	case errors.Is(err, ErrReplayed):
		return Identity{}, &Error{Kind: ErrReplayed, Reason: "token_replayed", Detail: "provider " + id.Provider}
	case err != nil:
		return Identity{}, &Error{Kind: ErrUnavailable, Reason: "replay_check_failed", Detail: err.Error()}
	}
	return id, nil
}

// Posture is what one posture source said about the workload of a request:
// a verified assertion it pushed, or attributes pulled for its identity.
// Conditions read the attributes of a present posture as context.<source>.
type Posture struct {
	Source string `json:"source"`
	// Status is PosturePresent, PostureAbsent (nothing was sent, or the
	// source fails as absent) or PostureUnavailable (the source failed:
	// every map that reads it is false).
	Status string `json:"status"`
	// Reason says why a posture is not present: a short code and detail,
	// never the assertion itself.
	Reason string `json:"reason,omitempty"`
	// IssuedAt is when the assertion was issued or the attributes fetched.
	IssuedAt   time.Time      `json:"issued_at,omitzero"`
	Attributes map[string]any `json:"-"`
}

// Posture statuses.
const (
	PosturePresent     = "present"
	PostureAbsent      = "absent"
	PostureUnavailable = "unavailable"
)
