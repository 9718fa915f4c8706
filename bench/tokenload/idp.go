package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// idp is a loopback OIDC issuer with one ES256 key.
type idp struct {
	srv    *httptest.Server
	url    string
	caFile string
	key    *ecdsa.PrivateKey
	dir    string
}

func newIdP() *idp {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	i := &idp{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": i.url, "jwks_uri": i.url + "/keys"})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	i.srv = httptest.NewUnstartedServer(mux)
	i.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	i.srv.StartTLS()
	i.url = i.srv.URL
	i.dir, _ = os.MkdirTemp("", "tokenload")
	i.caFile = filepath.Join(i.dir, "idp-ca.pem")
	os.WriteFile(i.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: i.srv.Certificate().Raw}), 0o600)
	return i
}

func (i *idp) close() {
	i.srv.Close()
	os.RemoveAll(i.dir)
}

// tokens signs n distinct subject tokens for the broker, valid 10 minutes.
func (i *idp) tokens(n int) []string {
	now := time.Now().Unix()
	out := make([]string, n)
	for j := range n {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
			"iss": i.url, "sub": "system:serviceaccount:load:agent", "aud": "https://sts.example.com",
			"iat": now, "exp": now + 600, "jti": fmt.Sprintf("load-%d", j),
		})
		tok.Header["kid"] = "k1"
		out[j], _ = tok.SignedString(i.key)
	}
	return out
}
