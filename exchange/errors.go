package exchange

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// OAuth error codes of the token endpoint (RFC 6749 §5.2, RFC 8707 §2,
// RFC 8693 §2.2.2).
const (
	errInvalidRequest       = "invalid_request"
	errInvalidClient        = "invalid_client"
	errInvalidGrant         = "invalid_grant"
	errUnauthorizedClient   = "unauthorized_client"
	errUnsupportedGrantType = "unsupported_grant_type"
	errInvalidScope         = "invalid_scope"
	errInvalidTarget        = "invalid_target"
	errServerError          = "server_error"
	errUnavailable          = "temporarily_unavailable"
)

// oauthError is an error answer. Description is public: it helps the
// client and names no internals; detail is for the operator's log only.
type oauthError struct {
	status      int
	code        string
	description string
	detail      string
	// check names the verification check that refused a credential
	// (attest.ReasonOf): the audit trail's, never the client's.
	check string
	// basic: the client authenticated with HTTP Basic, so a 401 carries
	// WWW-Authenticate: Basic (RFC 6749 §5.2).
	basic bool
	// retryAfter, when set, goes out as Retry-After (whole seconds, at
	// least 1).
	retryAfter time.Duration
	// nonce, when set, goes out as DPoP-Nonce (use_dpop_nonce).
	nonce string
}

func (e *oauthError) Error() string { return e.code + ": " + e.description }

// fail makes an error answer; a description quoting the request is bounded.
func fail(status int, code, description string) *oauthError {
	return &oauthError{status: status, code: code, description: bound(description, maxAttrBytes)}
}

// noStore marks a response as not cacheable: every token endpoint answer.
func writeError(w http.ResponseWriter, e *oauthError, traceID string) {
	noStore(w)
	if e.status == http.StatusUnauthorized && e.basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="mcpsts"`)
	}
	if e.status == http.StatusServiceUnavailable && e.retryAfter == 0 {
		e.retryAfter = retryAfterStore // every 503 says when to come back
	}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.retryAfter.Seconds()))))
	}
	if e.nonce != "" {
		w.Header().Set(dpop.NonceHeader, e.nonce)
	}
	body := map[string]string{"error": e.code}
	if e.description != "" {
		body["error_description"] = e.description
	}
	if traceID != "" {
		body["trace_id"] = traceID
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(body)
}

func attestError(err error, code string) *oauthError {
	reason := attest.ReasonOf(err)
	switch {
	case errors.Is(err, attest.ErrUnavailable):
		e := fail(http.StatusServiceUnavailable, errUnavailable, "the credential cannot be verified now; retry later")
		e.detail = err.Error()
		return e
	case errors.Is(err, attest.ErrReplayed):
		e := fail(http.StatusBadRequest, code, "the credential was already used")
		e.check, e.detail = "token_replayed", err.Error()
		return e
	case errors.Is(err, attest.ErrInvalidEvidence):
		e := fail(http.StatusBadRequest, code, "the credential was refused")
		e.check, e.detail = reason, err.Error()
		return e
	}
	e := fail(http.StatusInternalServerError, errServerError, "internal error")
	e.detail = err.Error()
	return e
}

// decisionError maps a trust-map refusal to its OAuth error.
func decisionError(err error, grantType string) *oauthError {
	var den *trustmaps.Denial
	switch {
	case errors.Is(err, errClientGrant):
		return &oauthError{status: http.StatusBadRequest, code: errUnauthorizedClient, description: "the client is registered without this grant type", detail: err.Error()}
	case errors.As(err, &den) && errors.Is(err, trustmaps.ErrInvalidScope):
		return &oauthError{status: http.StatusBadRequest, code: errInvalidScope, description: "a requested scope is not granted (" + den.Reason + ")", detail: den.Detail}
	case errors.As(err, &den) && errors.Is(err, trustmaps.ErrInvalidTarget):
		return &oauthError{status: http.StatusBadRequest, code: errInvalidTarget, description: "the requested resource is not granted (" + den.Reason + ")", detail: den.Detail}
	case errors.As(err, &den):
		code := errInvalidRequest // RFC 8693 §2.2.2: unacceptable by policy
		switch grantType {
		case GrantJWTBearer:
			code = errInvalidGrant
		case GrantClientCreds:
			code = errUnauthorizedClient
		}
		return &oauthError{status: http.StatusBadRequest, code: code, description: "no trust map grants this identity a token (" + den.Reason + ")", detail: den.Detail}
	}
	return &oauthError{status: http.StatusInternalServerError, code: errServerError, description: "internal error", detail: err.Error()}
}
