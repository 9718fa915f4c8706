package resource

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/dpop"
)

// DPoP configures DPoP-bound tokens at this server (RFC 9449 §7): such a
// token comes as "Authorization: DPoP <token>" with a proof of its key for
// this very request (htm, htu, ath), never twice.
type DPoP struct {
	// Required refuses bearer tokens: every token must be DPoP-bound
	// (the metadata says dpop_bound_access_tokens_required).
	Required bool
	// Nonces, when set, makes every proof carry one of this server's
	// nonces (use_dpop_nonce).
	Nonces dpop.Nonces
	// ProofCacheSize bounds the proof jti values remembered (default
	// 100,000). A proof is accepted for 2.5 minutes (iat from 2 minutes
	// ago to 30 seconds ahead), and remembered as long: size it as the
	// proofs per second × 150 (the default serves 660 a second). Past it,
	// a new proof is refused (503, Retry-After) rather than forget a live
	// one, which would make it replayable. Several replicas of one server
	// each remember their own: give them a shared Replay instead.
	ProofCacheSize int
	// Replay, when set, replaces the in-memory jti cache (a store shared
	// by the replicas).
	Replay attest.ReplayCache
}

const defaultProofCache = 100_000

// memoryReplay remembers proof jti values until they expire, in a bounded
// LRU.
type memoryReplay struct {
	mu    sync.Mutex
	size  int
	seen  *lru.Cache[string, time.Time] // in the order claimed (Peek, never Get)
	clock func() time.Time
}

func newMemoryReplay(size int, clock func() time.Time) *memoryReplay {
	if size <= 0 {
		size = defaultProofCache
	}
	c, _ := lru.New[string, time.Time](size + 1)
	return &memoryReplay{size: size, seen: c, clock: clock}
}

// errProofCacheFull: every remembered proof is still live; forgetting one
// would make it replayable.
var errProofCacheFull = errors.New("resource: the DPoP proof cache is full of live proofs")

// Claim implements attest.ReplayCache. When full, the oldest proofs are
// forgotten only once they have expired; a cache full of live ones refuses
// the new proof (the request gets 503 and retries) rather than forget one.
func (m *memoryReplay) Claim(_ context.Context, key string, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock()
	if u, ok := m.seen.Peek(key); ok && now.Before(u) {
		return attest.ErrReplayed
	}
	for m.seen.Len() >= m.size {
		k, u, ok := m.seen.GetOldest()
		if !ok {
			break
		}
		if now.Before(u) && k != key {
			return errProofCacheFull
		}
		m.seen.Remove(k)
	}
	m.seen.Add(key, until)
	return nil
}

// credentials reads the Authorization header: its scheme (Bearer or DPoP)
// and token. present is false when the request carries none for us;
// problem says why a request that tries to is malformed.
func (s *Server) credentials(h http.Header) (scheme, token string, present bool, problem string) {
	vals := h.Values("Authorization")
	switch {
	case len(vals) == 0:
		return "", "", false, ""
	case len(vals) > 1:
		return "", "", false, "the request has more than one Authorization header"
	}
	scheme, tok, _ := strings.Cut(vals[0], " ")
	switch {
	case strings.EqualFold(scheme, dpop.Scheme) && s.proofs == nil:
		return "", "", false, "this server accepts Bearer tokens only, not DPoP"
	case strings.EqualFold(scheme, dpop.Scheme):
		scheme = dpop.Scheme
	case strings.EqualFold(scheme, "Bearer"):
		scheme = "Bearer"
	default:
		return "", "", false, "" // another scheme: no credentials for us
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || strings.ContainsAny(tok, " \t,") {
		return "", "", false, "the Authorization header is not '" + scheme + "' and one token"
	}
	return scheme, tok, true, ""
}

// proofFor checks a DPoP-bound token's proof on this request.
func (s *Server) proofFor(r *http.Request, token, jkt string) *tokenError {
	_, err := s.proofs.Verify(r.Context(), r.Header.Values(dpop.Header), dpop.Check{
		Method: r.Method, URL: s.origin + r.URL.EscapedPath(), AccessToken: token, JKT: jkt,
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, dpop.ErrUseNonce):
		return &tokenError{description: "the DPoP proof must carry this server's nonce", dpop: "use_dpop_nonce", err: err}
	case errors.Is(err, dpop.ErrInvalidProof):
		return &tokenError{description: strings.TrimPrefix(err.Error(), dpop.ErrInvalidProof.Error()+": "), dpop: "invalid_dpop_proof", err: err}
	}
	return &tokenError{description: "the DPoP proof cannot be checked now", unavailable: true, err: err}
}

// dpopChallenge is the DPoP challenge beside Bearer's (RFC 9449 §7.1).
func (s *Server) dpopChallenge(w http.ResponseWriter, code, description string) {
	params := []string{`algs="` + strings.Join(s.proofAlgs, " ") + `"`}
	if code != "" {
		params = append([]string{`error="` + code + `"`, `error_description="` + description + `"`}, params...)
	}
	w.Header().Add("WWW-Authenticate", dpop.Scheme+" "+strings.Join(params, ", "))
	if code == "use_dpop_nonce" {
		w.Header().Set(dpop.NonceHeader, s.cfg.DPoP.Nonces.Nonce())
	}
}
