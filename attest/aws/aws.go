// Package aws attests AWS IAM identities without a shared secret: the
// workload signs an sts:GetCallerIdentity request (SigV4) naming this
// broker in a signed header, and the broker has AWS STS answer it. The
// serialization is the one Google's STS takes for subject_token_type
// urn:ietf:params:aws:token-type:aws4_request, so Google's external-account
// client works unmodified.
package aws

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcpsts/mcpsts/attest"
)

// TokenType is the RFC 8693 subject_token_type of the evidence.
const TokenType = "urn:ietf:params:aws:token-type:aws4_request"

// Kind is the attest.Identity.Kind of AWS identities.
const Kind = "aws"

// Target headers: the signed header that names the broker the request is
// for. Google's client sends the first; our own builder the second.
const (
	HeaderGoogleTarget = "x-goog-cloud-target-resource"
	HeaderTarget       = "x-mcpsts-audience"
)

// MaxAge is how old a signed request may be (SigV4's own window).
const MaxAge = 15 * time.Minute

// defaultHosts matches the global and regional STS endpoints, including the
// China partition.
var defaultHosts = regexp.MustCompile(`^sts(\.[a-z0-9-]+)?\.amazonaws\.com(\.cn)?$`)

// Verifier verifies GetCallerIdentity evidence. Safe for concurrent use.
type Verifier struct {
	// Provider names the identities' provider (default "aws").
	Provider string
	// Audiences are the target values that name this broker.
	Audiences []string
	// Hosts, when set, replaces the allow-list of STS endpoint hosts
	// (host or host:port: FIPS, GovCloud, tests); only these are ever
	// contacted.
	Hosts []string
	// HTTP sends the request to STS (nil: a client with a 10s timeout).
	HTTP  *http.Client
	Clock func() time.Time
}

// signedRequest is the serialized evidence.
type signedRequest struct {
	URL     string `json:"url"`
	Method  string `json:"method"`
	Headers []struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	} `json:"headers"`
	Body string `json:"body"`
}

// Attest implements attest.Attestor.
func (v *Verifier) Attest(ctx context.Context, ev attest.Evidence) (attest.Identity, error) {
	if len(ev.Token) > 16<<10 {
		return attest.Identity{}, attest.Invalid("token_too_large", "")
	}
	raw, err := url.QueryUnescape(string(ev.Token))
	if err != nil {
		return attest.Identity{}, attest.Invalid("malformed_token", "not URL-escaped")
	}
	var req signedRequest
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return attest.Identity{}, attest.Invalid("malformed_token", "not a serialized signed request")
	}
	u, err := url.Parse(req.URL)
	switch {
	case err != nil || u.Scheme != "https" || !v.allowedHost(u) || u.User != nil:
		return attest.Identity{}, attest.Invalid("untrusted_endpoint", "the request is not for an allow-listed STS endpoint")
	case req.Method != http.MethodPost:
		return attest.Identity{}, attest.Invalid("malformed_token", "method is not POST")
	case !isGetCallerIdentity(u.RawQuery, req.Body):
		return attest.Identity{}, attest.Invalid("malformed_token", "the request is not sts:GetCallerIdentity")
	}
	h := http.Header{}
	for _, kv := range req.Headers {
		if h.Values(kv.Key) != nil {
			// SigV4 would sign the values joined; STS and this verifier
			// could read them differently. No client sends one twice.
			return attest.Identity{}, attest.Invalid("malformed_token", "header "+strconv.Quote(http.CanonicalHeaderKey(kv.Key))+" is repeated")
		}
		h.Add(kv.Key, kv.Value)
	}
	signed, sig, err := signedHeaders(h.Get("Authorization"))
	if err != nil {
		return attest.Identity{}, attest.Invalid("malformed_token", err.Error())
	}
	target, targetHeader := h.Get(HeaderTarget), HeaderTarget
	if target == "" {
		target, targetHeader = h.Get(HeaderGoogleTarget), HeaderGoogleTarget
	}
	switch {
	case target == "":
		return attest.Identity{}, attest.Invalid("missing_target", "no "+HeaderTarget+" or "+HeaderGoogleTarget+" header")
	case !slices.Contains(signed, targetHeader) || !slices.Contains(signed, "host") || !slices.Contains(signed, "x-amz-date"):
		return attest.Identity{}, attest.Invalid("unsigned_target", "the target, host and date headers must be signed")
	case !slices.Contains(v.Audiences, strings.TrimPrefix(target, "https:")) && !slices.Contains(v.Audiences, target):
		return attest.Identity{}, attest.Invalid("wrong_audience", "the signed request names another service")
	case h.Get("Host") != "" && h.Get("Host") != u.Host:
		return attest.Identity{}, attest.Invalid("malformed_token", "host header and URL disagree")
	}
	date, err := time.Parse("20060102T150405Z", h.Get("X-Amz-Date"))
	now := v.now()
	if err != nil || now.Sub(date) > MaxAge || date.Sub(now) > 5*time.Minute {
		return attest.Identity{}, attest.Invalid("token_expired", "the signed request is outside SigV4's 15-minute window")
	}
	result, err := v.call(ctx, u, req.Method, h, req.Body)
	if err != nil {
		return attest.Identity{}, err
	}
	id := identity(result, v.provider())
	id.Expiry = date.Add(MaxAge)
	id.ReplayKey = "aws:" + sig
	return id, nil
}

func (v *Verifier) provider() string {
	if v.Provider == "" {
		return "aws"
	}
	return v.Provider
}

func (v *Verifier) now() time.Time {
	if v.Clock == nil {
		return time.Now()
	}
	return v.Clock()
}

// allowedHost: with Hosts, the URL's host (host:port when an entry has a
// port) must be listed; otherwise it must be an AWS STS endpoint on 443.
func (v *Verifier) allowedHost(u *url.URL) bool {
	if len(v.Hosts) > 0 {
		return slices.Contains(v.Hosts, u.Host) || u.Port() == "" && slices.Contains(v.Hosts, u.Hostname())
	}
	return (u.Port() == "" || u.Port() == "443") && defaultHosts.MatchString(u.Hostname())
}

func isGetCallerIdentity(query, body string) bool {
	for _, s := range []string{query, body} {
		if q, err := url.ParseQuery(s); err == nil && q.Get("Action") == "GetCallerIdentity" && q.Get("Version") == "2011-06-15" && len(q) == 2 {
			return true
		}
	}
	return false
}

// sigV4Auth is the form of a SigV4 Authorization header, as AWS documents
// it: the algorithm, then Credential, SignedHeaders and Signature, each
// once, in that order, and nothing else. Anything looser would let
// evidence carry components STS ignores and this verifier reads (a second
// SignedHeaders naming a header the signature does not cover).
var sigV4Auth = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([^,\s=]+), ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$`)

// signedHeaders reads a SigV4 Authorization header: the signed header
// names (each once, in SigV4's sorted order) and the signature.
func signedHeaders(auth string) ([]string, string, error) {
	m := sigV4Auth.FindStringSubmatch(auth)
	if m == nil {
		return nil, "", fmt.Errorf("not a SigV4 Authorization header of exactly Credential, SignedHeaders and Signature")
	}
	signed := strings.Split(m[2], ";")
	for i, name := range signed {
		if name == "" || i > 0 && name <= signed[i-1] {
			return nil, "", fmt.Errorf("SigV4 signed headers are not distinct, sorted names")
		}
	}
	return signed, m[3], nil
}

// callerIdentity is STS's answer.
type callerIdentity struct {
	Arn     string `xml:"GetCallerIdentityResult>Arn"`
	UserID  string `xml:"GetCallerIdentityResult>UserId"`
	Account string `xml:"GetCallerIdentityResult>Account"`
}

// call sends the signed request, exactly as signed, to STS.
func (v *Verifier) call(ctx context.Context, u *url.URL, method string, h http.Header, body string) (callerIdentity, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), strings.NewReader(body))
	if err != nil {
		return callerIdentity{}, attest.Invalid("malformed_token", "")
	}
	for k, vs := range h {
		if strings.EqualFold(k, "Host") {
			continue
		}
		req.Header[k] = vs
	}
	c := v.HTTP
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	c = &http.Client{Transport: c.Transport, Timeout: c.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		return callerIdentity{}, &attest.Error{Kind: attest.ErrUnavailable, Reason: "sts_unreachable", Detail: err.Error()}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode >= 500:
		return callerIdentity{}, &attest.Error{Kind: attest.ErrUnavailable, Reason: "sts_unavailable", Detail: fmt.Sprintf("status %d", resp.StatusCode)}
	default:
		return callerIdentity{}, attest.Invalid("sts_refused", fmt.Sprintf("STS answered %d", resp.StatusCode))
	}
	var ci callerIdentity
	if err := xml.Unmarshal(data, &ci); err != nil || ci.Arn == "" || ci.Account == "" {
		return callerIdentity{}, &attest.Error{Kind: attest.ErrUnavailable, Reason: "sts_answer", Detail: "not a GetCallerIdentityResponse"}
	}
	return ci, nil
}

// identity normalises STS's answer: an assumed role's subject is its role
// ARN (sessions come and go); anything else is its own ARN.
func identity(ci callerIdentity, provider string) attest.Identity {
	attrs := map[string]any{"account": ci.Account, "arn": ci.Arn, "user_id": ci.UserID}
	subject := ci.Arn
	parts := strings.SplitN(ci.Arn, ":", 6) // arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION
	if len(parts) == 6 {
		attrs["partition"] = parts[1]
		if res := strings.Split(parts[5], "/"); len(res) == 3 && res[0] == "assumed-role" {
			roleARN := "arn:" + parts[1] + ":iam::" + parts[4] + ":role/" + res[1]
			attrs["role_arn"], attrs["role_name"], attrs["session_name"] = roleARN, res[1], res[2]
			subject = roleARN
		}
	}
	return attest.Identity{Kind: Kind, Provider: provider, Issuer: "https://sts.amazonaws.com", Subject: subject, Attributes: attrs}
}
