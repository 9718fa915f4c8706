package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/exchange/authorize"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/internal/config"
)

// The people of serve --dev: its development login signs anyone in under
// this provider, which the sample people map trusts.
const (
	DevLoginProvider = "dev-login"
	DevLoginIssuer   = config.DevIssuer + "/login"
)

// newLogin returns how people sign in: the development login in dev, the
// user provider with a login section otherwise, or nil when neither (the
// browser flows are then off).
func newLogin(ctx context.Context, cfg *config.Config, dev bool, base, callback string, providers []*federation.Provider, getenv func(string) string, now func() time.Time) (authorize.Login, error) {
	if dev {
		return &authorize.DevLogin{Provider: DevLoginProvider, Issuer: DevLoginIssuer, Base: base}, nil
	}
	i := slices.IndexFunc(cfg.Providers, func(p config.Provider) bool { return p.Login != nil && p.Kind == "user" })
	if i < 0 {
		return nil, nil
	}
	pc, lc := cfg.Providers[i], cfg.Providers[i].Login
	where := fmt.Sprintf("providers[%d] (%s).login", i, pc.Name)
	transport, err := providerTransport(pc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	authURL, tokenURL := lc.AuthorizationEndpoint, lc.TokenEndpoint
	if authURL == "" {
		if authURL, tokenURL, err = discoverLogin(ctx, client, pc.Issuer); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	verifier, err := oidc.New(now, oidc.ProviderConfig{Keys: providers[i], Audiences: []string{lc.ClientID}, Users: true,
		Leeway: pc.Leeway, MaxTokenAge: 10 * time.Minute, Preset: oidc.Preset(pc.Preset), RequiredClaims: pc.RequiredClaims})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	scopes := lc.Scopes
	if len(scopes) == 0 {
		scopes = []string{"openid", "profile", "email"}
	}
	l := &authorize.OIDCLogin{
		OAuth2: oauth2.Config{ClientID: lc.ClientID, Scopes: scopes, RedirectURL: callback,
			Endpoint: oauth2.Endpoint{AuthURL: authURL, TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams}},
		IDTokens: verifier, EvidenceType: exchange.TokenTypeIDToken, HTTPClient: client,
	}
	switch {
	case lc.ClientSecretFile != "":
		b, err := os.ReadFile(lc.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("%s.client_secret_file: %w", where, err)
		}
		l.OAuth2.ClientSecret = strings.TrimSpace(string(b))
	case lc.ClientSecretEnv != "":
		if l.OAuth2.ClientSecret = getenv(lc.ClientSecretEnv); l.OAuth2.ClientSecret == "" {
			return nil, fmt.Errorf("%s.client_secret_env: %s is empty", where, lc.ClientSecretEnv)
		}
	default:
		if l.Assertion, err = clientAssertion(lc.PrivateKeyFile, lc.ClientID, tokenURL, now); err != nil {
			return nil, fmt.Errorf("%s.private_key_file: %w", where, err)
		}
	}
	if l.OAuth2.ClientSecret != "" {
		l.OAuth2.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	}
	return l, nil
}

// discoverLogin reads a provider's endpoints from its discovery document.
func discoverLogin(ctx context.Context, client *http.Client, issuer string) (authURL, tokenURL string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return "", "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	var doc struct {
		Issuer   string `json:"issuer"`
		Auth     string `json:"authorization_endpoint"`
		TokenURL string `json:"token_endpoint"`
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("discovery: %s answered %s", issuer, resp.Status)
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 64<<10)).Decode(&doc); err != nil {
		return "", "", fmt.Errorf("discovery: %v", err)
	}
	switch {
	case doc.Issuer != issuer:
		return "", "", fmt.Errorf("discovery: the document names issuer %q", doc.Issuer)
	case !strings.HasPrefix(doc.Auth, "https://") || !strings.HasPrefix(doc.TokenURL, "https://"):
		return "", "", errors.New("discovery: authorization_endpoint and token_endpoint must be https URLs")
	}
	return doc.Auth, doc.TokenURL, nil
}

// clientAssertion reads the private key of private_key_jwt and returns a
// maker of client assertions for the provider's token endpoint (RFC 7523
// §3): one minute, a new jti each, the key's RFC 7638 thumbprint as kid.
func clientAssertion(file, clientID, tokenURL string, now func() time.Time) (func() (string, error), error) {
	key, err := dpop.ReadKey(file)
	if err != nil {
		return nil, err
	}
	var method jwt.SigningMethod
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("an EC key must be P-256 (ES256)")
		}
		method = jwt.SigningMethodES256
	case *rsa.PrivateKey:
		method = jwt.SigningMethodRS256
	default:
		return nil, errors.New("want a P-256 EC or an RSA private key")
	}
	kid, err := dpop.Thumbprint(&jose.JSONWebKey{Key: key.Public()})
	if err != nil {
		return nil, err
	}
	return func() (string, error) {
		t := now()
		tok := jwt.NewWithClaims(method, jwt.MapClaims{"iss": clientID, "sub": clientID, "aud": tokenURL,
			"jti": authorize.Random(16), "iat": t.Unix(), "exp": t.Add(time.Minute).Unix()})
		tok.Header["kid"] = kid
		return tok.SignedString(key)
	}, nil
}
