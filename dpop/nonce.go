package dpop

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// HMACNonces are server nonces that every replica sharing Key issues and
// accepts with no shared state: a nonce is a time bucket and its HMAC. A
// nonce is accepted during its period and the next, so it rotates every
// Period and lives at most two.
type HMACNonces struct {
	Key    []byte
	Period time.Duration // 0: 5 minutes
	Clock  func() time.Time
}

func (n HMACNonces) bucket(t time.Time) uint64 {
	p := n.Period
	if p == 0 {
		p = 5 * time.Minute
	}
	return uint64(t.UnixNano() / int64(p))
}

func (n HMACNonces) now() time.Time {
	if n.Clock == nil {
		return time.Now()
	}
	return n.Clock()
}

func (n HMACNonces) make(b uint64) string {
	var buf [8 + 16]byte
	binary.BigEndian.PutUint64(buf[:8], b)
	m := hmac.New(sha256.New, n.Key)
	m.Write([]byte("mcpsts dpop nonce"))
	m.Write(buf[:8])
	copy(buf[8:], m.Sum(nil))
	return base64.RawURLEncoding.EncodeToString(buf[:])
}

// Nonce implements Nonces.
func (n HMACNonces) Nonce() string { return n.make(n.bucket(n.now())) }

// Valid implements Nonces.
func (n HMACNonces) Valid(nonce string) bool {
	b := n.bucket(n.now())
	return hmac.Equal([]byte(nonce), []byte(n.make(b))) || hmac.Equal([]byte(nonce), []byte(n.make(b-1)))
}
