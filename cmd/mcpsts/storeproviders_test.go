package main

import (
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"

	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/internal/awsfake"
	"github.com/mcpsts/mcpsts/internal/devpki"
)

// TestStoreProvidersSPIFFEAndAWS: a SPIFFE trust domain and AWS, added
// through the admin API to a server whose file trusts neither, are in force
// from its next reload; a removed trust domain is no longer trusted.
func TestStoreProvidersSPIFFEAndAWS(t *testing.T) {
	creds := sdkaws.Credentials{AccessKeyID: "AKIDFAKEEXAMPLE01", SecretAccessKey: "fake-secret"}
	sts := httptest.NewTLSServer(awsfake.AssumedRole(creds, "us-east-1"))
	defer sts.Close()
	dir := t.TempDir()
	stsCA := filepath.Join(dir, "sts.pem")
	os.WriteFile(stsCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sts.Certificate().Raw}), 0o600)
	prod := federationtest.NewTrustDomain("prod.example.org")
	bundle := filepath.Join(dir, "prod.json")
	raw, _ := prod.Bundle().Marshal()
	os.WriteFile(bundle, raw, 0o600)
	// An administrator by client certificate.
	adminPKI, err := devpki.Ensure(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	adminCert, adminKey, _ := devpki.EnsureAdmin(dir, time.Now())
	broker, ca := serveBroker(t, `id: role
match: {provider: aws, subject: "arn:aws:iam::111122223333:role/token-client-role"}
grant: {client_id: role-client, audiences: ["https://mcp.example.com/mcp"]}
---
id: agent
match: {provider: prod.example.org, subject: "spiffe://prod.example.org/agent"}
grant: {client_id: agent, audiences: ["https://mcp.example.com/mcp"]}
`, fmt.Sprintf("admin: {client_ca_file: %s, client_names: [%s]}", adminPKI.CAPath, devpki.AdminName))
	c := clientTrusting(t, ca)
	pair, _ := tls.LoadX509KeyPair(adminCert, adminKey)
	c.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{pair}
	put := func(id, doc string, header map[string]string) int {
		req, _ := http.NewRequest(http.MethodPut, broker+"/admin/v1/providers/"+id, strings.NewReader(doc))
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	create := map[string]string{"If-None-Match": "*"}
	// Provider names are one namespace in a safe alphabet: an OIDC
	// provider cannot take the AWS provider's name, nor a name with '/'
	// or upper case, nor the development provider's (--dev only).
	for id, name := range map[string]string{"aws": "aws", "prod": "Prod", "dev": "dev"} {
		doc := fmt.Sprintf(`{"type":"oidc","name":%q,"issuer":"https://%s.idp.example","jwks":"{\"keys\":[]}"}`, name, id)
		if status := put(id, doc, create); status != 400 {
			t.Fatalf("an OIDC provider named %q: %d, want 400", name, status)
		}
	}
	if status := put("prod.example.org", fmt.Sprintf(`{"type":"spiffe","name":"prod.example.org","bundle_file":%q}`, bundle), create); status != 201 {
		t.Fatalf("spiffe provider: %d", status)
	}
	if status := put("aws", fmt.Sprintf(`{"type":"aws","sts_hosts":[%q],"sts_ca_file":%q}`, strings.TrimPrefix(sts.URL, "https://"), stsCA), create); status != 201 {
		t.Fatalf("aws provider: %d", status)
	}
	if status := put("other", `{"type":"aws"}`, create); status != 400 {
		t.Fatalf("a second AWS provider: %d, want 400", status)
	}

	svidExchange := func() int {
		svid := prod.JWTSVID("/agent", []string{broker}, time.Now().Add(5*time.Minute))
		resp, err := c.PostForm(broker+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"subject_token": {svid}, "subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {"https://mcp.example.com/mcp"}})
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}
	waitFor("a JWT-SVID of the store's trust domain is never accepted", func() bool { return svidExchange() == 200 })

	for k, v := range map[string]string{"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY": creds.SecretAccessKey,
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"} {
		t.Setenv(k, v)
	}
	env := testEnv(map[string]string{"MCPSTS_AWS_STS_ENDPOINT": sts.URL})
	waitFor("a signed AWS request is never accepted", func() bool {
		out, _, err := run(t, env, "token", "--broker", broker, "--ca", ca, "--audience", "https://mcp.example.com/mcp", "--source", "aws")
		return err == nil && strings.Count(out, ".") == 2
	})

	req, _ := http.NewRequest(http.MethodDelete, broker+"/admin/v1/providers/prod.example.org", nil)
	req.Header.Set("If-Match", `"1"`)
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("delete: %v %v", resp, err)
	}
	resp.Body.Close()
	waitFor("a removed trust domain is still trusted", func() bool { return svidExchange() == 400 })
}
