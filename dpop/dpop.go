// Package dpop verifies and makes DPoP proofs (RFC 9449): a client proves,
// on every request, that it holds the private key a token is bound to. The
// token endpoint verifies proofs to bind tokens (cnf.jkt), MCP servers
// verify them to accept bound tokens, and agents make them. It imports
// nothing of ours but the replay-cache interface.
package dpop

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/mcpsts/mcpsts/attest"
)

// Header names and the proof's type.
const (
	Header      = "DPoP"
	NonceHeader = "DPoP-Nonce"
	Type        = "dpop+jwt"
	// Scheme is the Authorization scheme of a DPoP-bound token.
	Scheme = "DPoP"
)

// Algorithms are the asymmetric algorithms a proof may use by default;
// never none, never a MAC.
var Algorithms = []string{"ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA"}

// MaxProofBytes bounds a proof.
const MaxProofBytes = 8 << 10

// Errors. Every refusal wraps ErrInvalidProof (the OAuth error
// invalid_dpop_proof) but a missing or stale nonce, ErrUseNonce
// (use_dpop_nonce).
var (
	ErrInvalidProof = errors.New("invalid DPoP proof")
	ErrUseNonce     = errors.New("a fresh DPoP nonce is required")
)

// Nonces are server-provided nonces (RFC 9449 §8): Nonce gives the current
// one, Valid accepts the current and recent ones.
type Nonces interface {
	Nonce() string
	Valid(nonce string) bool
}

// Verifier checks proofs. It is safe for concurrent use.
type Verifier struct {
	// Algorithms allowed (nil: Algorithms).
	Algorithms []string
	// MaxAge is how old a proof's iat may be (0: 2 minutes); Future how
	// far ahead of the clock (0: 30 seconds).
	MaxAge, Future time.Duration
	// Replay claims each proof's jti, so that a proof is used once on
	// every replica sharing it; nil: none (do not run so).
	Replay attest.ReplayCache
	// Nonces, when set, makes every proof carry a valid nonce.
	Nonces Nonces
	Clock  func() time.Time

	once    sync.Once
	headers *lru.Cache[string, header] // parsed protected headers
}

// Check is what a proof must match: this request, and for a resource
// server the access token and its key.
type Check struct {
	// Method and URL of the request (htm, htu); the URL's query and
	// fragment are ignored.
	Method, URL string
	// AccessToken, when set, must be the proof's ath (at resource
	// servers).
	AccessToken string
	// JKT, when set, is the thumbprint the proof's key must have (a
	// token's cnf.jkt, or a bound refresh token's).
	JKT string
}

// Proof is a verified proof.
type Proof struct {
	// JKT is the base64url RFC 7638 SHA-256 thumbprint of the proof's key.
	JKT      string
	JTI      string
	IssuedAt time.Time
}

type claims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   *int64 `json:"iat"`
	Nonce string `json:"nonce"`
	ATH   string `json:"ath"`
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidProof, fmt.Sprintf(format, args...))
}

// Verify checks the DPoP header values of a request as RFC 9449 §4.3 orders
// it, then claims the proof's jti.
func (v *Verifier) Verify(ctx context.Context, headers []string, c Check) (Proof, error) {
	if len(headers) != 1 {
		return Proof{}, invalid("want exactly one DPoP header, got %d", len(headers))
	}
	raw := headers[0]
	if len(raw) > MaxProofBytes {
		return Proof{}, invalid("the proof is larger than %d bytes", MaxProofBytes)
	}
	h, err := v.header(raw)
	if err != nil {
		return Proof{}, err
	}
	input, sig, _ := cutLast(raw)
	sigBytes, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || h.method.Verify(input, sigBytes, h.key) != nil {
		return Proof{}, invalid("the signature does not verify with the jwk")
	}
	_, payloadSeg, _ := strings.Cut(input, ".")
	payload, err := base64.RawURLEncoding.DecodeString(payloadSeg)
	if err != nil {
		return Proof{}, invalid("the payload is not base64url")
	}
	var cl claims
	if err := json.Unmarshal(payload, &cl); err != nil {
		return Proof{}, invalid("the payload is not a JSON object")
	}
	switch {
	case cl.JTI == "" || len(cl.JTI) > 256:
		return Proof{}, invalid("jti is required (at most 256 characters)")
	case cl.HTM == "" || cl.HTU == "" || cl.IAT == nil:
		return Proof{}, invalid("htm, htu and iat are required")
	case cl.HTM != c.Method:
		return Proof{}, invalid("htm is not this request's method")
	case !sameURI(cl.HTU, c.URL):
		return Proof{}, invalid("htu is not this request's URI")
	}
	if v.Nonces != nil && (cl.Nonce == "" || !v.Nonces.Valid(cl.Nonce)) {
		return Proof{}, ErrUseNonce
	}
	now := time.Now
	if v.Clock != nil {
		now = v.Clock
	}
	maxAge, future := v.MaxAge, v.Future
	if maxAge == 0 {
		maxAge = 2 * time.Minute
	}
	if future == 0 {
		future = 30 * time.Second
	}
	iat := time.Unix(*cl.IAT, 0)
	switch t := now(); {
	case iat.Before(t.Add(-maxAge)):
		return Proof{}, invalid("iat is too old")
	case iat.After(t.Add(future)):
		return Proof{}, invalid("iat is in the future")
	}
	if c.AccessToken != "" {
		sum := sha256.Sum256([]byte(c.AccessToken))
		if subtle.ConstantTimeCompare([]byte(cl.ATH), []byte(base64.RawURLEncoding.EncodeToString(sum[:]))) != 1 {
			return Proof{}, invalid("ath is not the hash of the access token")
		}
	}
	jkt := h.jkt
	if c.JKT != "" && subtle.ConstantTimeCompare([]byte(jkt), []byte(c.JKT)) != 1 {
		return Proof{}, invalid("the proof's key is not the one the token is bound to")
	}
	if v.Replay != nil {
		// Held as long as the proof could be accepted.
		switch err := v.Replay.Claim(ctx, "dpop:"+jkt+":"+cl.JTI, iat.Add(maxAge+future)); {
		case errors.Is(err, attest.ErrReplayed):
			return Proof{}, invalid("the proof was used before (jti)")
		case err != nil:
			return Proof{}, fmt.Errorf("dpop: claim the proof's jti: %w", err)
		}
	}
	return Proof{JKT: jkt, JTI: cl.JTI, IssuedAt: iat}, nil
}

// header is what a proof's protected header says, checked: its signing
// method, public key and the key's thumbprint.
type header struct {
	method jwt.SigningMethod
	key    any
	jkt    string
}

// headerCacheSize bounds the parsed headers kept: a client's proofs all
// carry the same header (typ, alg, jwk), so it is parsed once per key.
const headerCacheSize = 4096

// header parses and checks the protected header of raw (typ, an allowed
// asymmetric alg, a public jwk), from the cache when this exact header was
// seen before.
func (v *Verifier) header(raw string) (header, error) {
	seg, _, ok := strings.Cut(raw, ".")
	if !ok {
		return header{}, invalid("not a JWS")
	}
	v.once.Do(func() { v.headers, _ = lru.New[string, header](headerCacheSize) })
	if h, ok := v.headers.Get(seg); ok {
		return h, nil
	}
	algs := v.Algorithms
	if algs == nil {
		algs = Algorithms
	}
	allowed := make([]jose.SignatureAlgorithm, len(algs))
	for i, a := range algs {
		allowed[i] = jose.SignatureAlgorithm(a)
	}
	jws, err := jose.ParseSigned(raw, allowed)
	if err != nil {
		return header{}, invalid("not a JWS with an allowed algorithm (%s)", strings.Join(algs, ", "))
	}
	if len(jws.Signatures) != 1 {
		return header{}, invalid("want one signature")
	}
	p := jws.Signatures[0].Protected
	if typ, _ := p.ExtraHeaders[jose.HeaderType].(string); typ != Type {
		return header{}, invalid("typ must be %s", Type)
	}
	jwk := p.JSONWebKey
	switch {
	case jwk == nil:
		return header{}, invalid("no jwk in the header")
	case !jwk.IsPublic(): // go-jose refuses an embedded private key already
		return header{}, invalid("the jwk holds a private or symmetric key")
	case !jwk.Valid():
		return header{}, invalid("the jwk is not a valid key")
	}
	method := jwt.GetSigningMethod(p.Algorithm)
	if method == nil {
		return header{}, invalid("alg %s is not supported", p.Algorithm)
	}
	jkt, err := Thumbprint(jwk)
	if err != nil {
		return header{}, invalid("the jwk has no thumbprint")
	}
	h := header{method: method, key: jwk.Key, jkt: jkt}
	v.headers.Add(seg, h)
	return h, nil
}

// cutLast splits a compact JWS into its signing input and signature.
func cutLast(raw string) (input, sig string, ok bool) {
	i := strings.LastIndexByte(raw, '.')
	if i < 0 {
		return "", "", false
	}
	return raw[:i], raw[i+1:], true
}

// Thumbprint is the base64url RFC 7638 SHA-256 thumbprint of a key.
func Thumbprint(k *jose.JSONWebKey) (string, error) {
	b, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// sameURI compares htu with the request's URI, both without query and
// fragment, scheme and host in lower case and default ports dropped
// (RFC 9449 §4.3, RFC 3986 §6.2.2–6.2.3).
func sameURI(htu, request string) bool {
	a, ok1 := normalize(htu)
	b, ok2 := normalize(request)
	return ok1 && ok2 && a == b
}

func normalize(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil {
		return "", false
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname())
	port := u.Port()
	if scheme == "https" && port == "443" || scheme == "http" && port == "80" {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, true
}
