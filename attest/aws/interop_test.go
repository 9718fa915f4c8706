package aws_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"cloud.google.com/go/auth/credentials/externalaccount"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/aws"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/issuer/keystoretest"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// TestGoogleExternalAccountAWS: Google's external-account client, with an
// AWS credential source fed from environment credentials, signs its
// GetCallerIdentity request and gets a token from mcpsts, unmodified.
func TestGoogleExternalAccountAWS(t *testing.T) {
	sts, _ := fakeSTS(t)
	eng, err := trustmaps.Compile(trustmaps.Document{Name: "m.yaml", Data: []byte(`id: role
match: {provider: aws, subject: "arn:aws:iam::111122223333:role/token-client-role"}
grant: {client_id: role-client, audiences: ["https://payments.example.com/mcp"], scopes: [payments:read]}
`)})
	if err != nil {
		t.Fatal(err)
	}
	text, _ := issuer.GenerateKEK()
	kek, _ := issuer.ParseKEK(text)
	iss, _ := issuer.New(issuer.Config{Issuer: broker, Store: keystoretest.NewMemory(), Local: &issuer.LocalKeys{KEK: kek, Algorithm: issuer.ES256}})
	if err := iss.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Google's signer takes the service name from the endpoint's first
	// label, as on sts.REGION.amazonaws.com: give the fake such a name and
	// dial it on loopback.
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(sts.URL, "https://"))
	stsHost := "sts.mcpsts.test:" + port
	tr := sts.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.ServerName = "example.com" // in httptest's certificate
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:"+port)
	}
	v := &aws.Verifier{Audiences: []string{broker}, Hosts: []string{stsHost}, HTTP: &http.Client{Transport: tr}}
	srv := httptest.NewTLSServer(exchange.NewHandler(exchange.Config{
		Self:      []string{broker},
		Attestors: map[string]attest.Attestor{aws.TokenType: v},
		Decider:   eng, Minter: iss,
	}))
	defer srv.Close()

	t.Setenv("AWS_REGION", region)
	t.Setenv("AWS_ACCESS_KEY_ID", creds.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", creds.SecretAccessKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	c, err := externalaccount.NewCredentials(&externalaccount.Options{
		Audience:         broker,
		SubjectTokenType: aws.TokenType,
		TokenURL:         srv.URL,
		Scopes:           []string{"payments:read"},
		CredentialSource: &externalaccount.CredentialSource{
			EnvironmentID:               "aws1",
			RegionalCredVerificationURL: "https://" + stsHost + "?Action=GetCallerIdentity&Version=2011-06-15",
		},
		Client: srv.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v2, err := iss.Inspect(tok.Value)
	if err != nil || v2.Audience != "https://payments.example.com/mcp" || v2.ClientID != "role-client" {
		t.Fatalf("token %+v %v", v2, err)
	}
}
