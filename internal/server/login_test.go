package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/exchange/authorize"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/internal/config"
)

// TestOIDCLogin: mcpsts as the relying party of a corporate provider,
// authenticated by private_key_jwt or a client secret, endpoints from
// discovery: the sign-in gives the person, and an ID token whose nonce is
// not the flow's, a refused client, or a refusal at the provider give
// nobody.
func TestOIDCLogin(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "login-key.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("s3cret\n"), 0o600)

	for _, tc := range []struct {
		name    string
		idp     federationtest.Login
		login   config.Login
		getenv  map[string]string
		nonce   string // "" the flow's
		user    string
		wantErr error
	}{
		{"private_key_jwt", federationtest.Login{ClientID: "mcpsts", ClientKey: &key.PublicKey}, config.Login{ClientID: "mcpsts", PrivateKeyFile: keyFile}, nil, "", "alice", nil},
		{"client secret from a file", federationtest.Login{ClientID: "mcpsts", ClientSecret: "s3cret"}, config.Login{ClientID: "mcpsts", ClientSecretFile: secretFile}, nil, "", "alice", nil},
		{"client secret from the environment", federationtest.Login{ClientID: "mcpsts", ClientSecret: "env-secret"}, config.Login{ClientID: "mcpsts", ClientSecretEnv: "CORP_SECRET"},
			map[string]string{"CORP_SECRET": "env-secret"}, "", "alice", nil},
		{"a key the provider does not know", federationtest.Login{ClientID: "mcpsts", ClientKey: &other.PublicKey}, config.Login{ClientID: "mcpsts", PrivateKeyFile: keyFile}, nil, "", "alice", authorize.ErrLoginRefused},
		{"a wrong secret", federationtest.Login{ClientID: "mcpsts", ClientSecret: "other"}, config.Login{ClientID: "mcpsts", ClientSecretFile: secretFile}, nil, "", "alice", authorize.ErrLoginRefused},
		{"an ID token for another flow (nonce)", federationtest.Login{ClientID: "mcpsts", ClientSecret: "s3cret"}, config.Login{ClientID: "mcpsts", ClientSecretFile: secretFile}, nil, "another-nonce", "alice", authorize.ErrLoginInvalid},
		{"the person refused", federationtest.Login{ClientID: "mcpsts", ClientSecret: "s3cret", Refuse: true}, config.Login{ClientID: "mcpsts", ClientSecretFile: secretFile}, nil, "", "alice", authorize.ErrLoginRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp := federationtest.NewIssuer(t)
			idp.EnableLogin(tc.idp)
			caFile := filepath.Join(t.TempDir(), "idp.pem")
			os.WriteFile(caFile, idp.CAPEM(), 0o600)
			login := tc.login
			cfg := &config.Config{Providers: []config.Provider{{Name: "corp", Kind: "user", Issuer: idp.URL, Discovery: true, CAFile: caFile, Login: &login}}}
			prov, err := federation.NewProvider(federation.ProviderConfig{Name: "corp", Issuer: idp.URL, Discovery: true, Fetcher: idp.Fetcher()})
			if err != nil {
				t.Fatal(err)
			}
			const callback = "https://sts.example/login/callback"
			l, err := newLogin(context.Background(), cfg, false, "", callback, []*federation.Provider{prov}, func(k string) string { return tc.getenv[k] }, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			f := authorize.Flow{Nonce: authorize.Random(32), Verifier: authorize.Random(32)}
			w := httptest.NewRecorder()
			l.Start(w, httptest.NewRequest("GET", "https://sts.example/authorize", nil), "the-state-of-this-flow-xyz", f)
			to, _ := url.Parse(w.Header().Get("Location"))
			if q := to.Query(); q.Get("redirect_uri") != callback || q.Get("code_challenge_method") != "S256" || q.Get("nonce") != f.Nonce || q.Get("scope") != "openid profile email" {
				t.Fatalf("sent to %s", to)
			}
			// The person signs in at the provider's page.
			c := &http.Client{Transport: idp.Transport(), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := c.PostForm(to.String(), url.Values{"username": {tc.user}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			back, _ := url.Parse(resp.Header.Get("Location"))
			if !strings.HasPrefix(back.String(), callback) || back.Query().Get("state") != "the-state-of-this-flow-xyz" {
				t.Fatalf("back to %s", back)
			}
			if tc.nonce != "" {
				f.Nonce = tc.nonce
			}
			id, err := l.Finish(context.Background(), httptest.NewRequest("GET", back.String(), nil), f)
			switch {
			case tc.wantErr == nil && (err != nil || id.Subject != tc.user || id.Provider != "corp" || id.Kind != "user"):
				t.Fatalf("Finish = %+v, %v", id, err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("Finish = %+v, %v; want %v", id, err, tc.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "eyJ")) {
				t.Fatalf("the error shows a secret or a token: %v", err)
			}
		})
	}
}
