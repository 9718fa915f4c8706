package issuer

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// keySet is one loaded, immutable view of the keys: what signs and what is
// published. The JWKS holds every pending, active and retired key, so a key
// is published by this replica before this replica can sign with it.
type keySet struct {
	loadedAt time.Time
	// signing lists the keys that may sign, by activation time ascending.
	signing []signingKey
	jwks    []byte
	etag    string
	// published are the public keys in the JWKS, by kid, for Verify.
	published map[string]publishedKey
}

type publishedKey struct {
	alg Algorithm
	pub crypto.PublicKey
}

type signingKey struct {
	activateAt time.Time
	signer     Signer
	// header is the encoded JWS protected header of the key's tokens,
	// computed once: alg, kid and typ at+jwt (RFC 9068 §2.1).
	header string
}

func encodeHeader(s Signer) (string, error) { return encodeTypedHeader(s, "at+jwt") }

// encodeTypedHeader encodes the JWS protected header of s's tokens of type
// typ.
func encodeTypedHeader(s Signer, typ string) (string, error) {
	h, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{string(s.Algorithm()), s.KeyID(), typ})
	if err != nil {
		return "", fmt.Errorf("issuer: encode header: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(h), nil
}

func newKeySet(statuses []KeyStatus, signers map[string]Signer, now time.Time) (*keySet, error) {
	ks := &keySet{loadedAt: now, published: map[string]publishedKey{}}
	var set jose.JSONWebKeySet
	for _, st := range statuses { // ordered by activation
		if st.State == StateExpired {
			continue
		}
		pub, err := st.Public()
		if err != nil {
			return nil, err
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: pub, KeyID: st.ID, Algorithm: string(st.Algorithm), Use: "sig"})
		ks.published[st.ID] = publishedKey{alg: st.Algorithm, pub: pub}
		if s, ok := signers[st.ID]; ok {
			header, err := encodeHeader(s)
			if err != nil {
				return nil, err
			}
			ks.signing = append(ks.signing, signingKey{activateAt: st.ActivateAt, signer: s, header: header})
		}
	}
	if set.Keys == nil {
		set.Keys = []jose.JSONWebKey{}
	}
	body, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("issuer: marshal JWKS: %w", err)
	}
	sum := sha256.Sum256(body)
	ks.jwks = body
	ks.etag = `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
	return ks, nil
}

// signer returns the key that signs at now: the last one activated.
func (ks *keySet) signer(now time.Time) (*signingKey, error) {
	if ks == nil || now.Sub(ks.loadedAt) > MaxStaleness {
		return nil, ErrNoSigningKey
	}
	for j := len(ks.signing) - 1; j >= 0; j-- {
		if !ks.signing[j].activateAt.After(now) {
			return &ks.signing[j], nil
		}
	}
	return nil, ErrNoSigningKey
}

// JWKSMaxAge is the Cache-Control max-age of the JWKS: far shorter than
// PublishLead, so that verifiers hold a new key long before it signs.
const JWKSMaxAge = 5 * time.Minute

// JWKSHandler serves the published keys (RFC 7517) with an ETag and a short
// max-age. Before the first load it answers 503.
func (i *Issuer) JWKSHandler() http.Handler {
	cacheControl := fmt.Sprintf("public, max-age=%d", int(JWKSMaxAge.Seconds()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks := i.keys.Load()
		if ks == nil {
			http.Error(w, "signing keys not loaded yet", http.StatusServiceUnavailable)
			return
		}
		h := w.Header()
		h.Set("Cache-Control", cacheControl)
		h.Set("ETag", ks.etag)
		if match := r.Header.Get("If-None-Match"); match != "" && match == ks.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", "application/jwk-set+json")
		w.Write(ks.jwks)
	})
}
