package aws_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/aws"
	"github.com/mcpsts/mcpsts/internal/awsfake"
)

const (
	broker = "https://sts.example.com"
	region = "us-east-1"
)

var creds = sdkaws.Credentials{AccessKeyID: "AKIDFAKEEXAMPLE01", SecretAccessKey: "fake-secret", Source: "test"}

// fakeSTS is a loopback STS that checks the real SigV4 signature.
func fakeSTS(t testing.TB) (*httptest.Server, *atomic.Int64) {
	sts := awsfake.AssumedRole(creds, region)
	srv := httptest.NewTLSServer(sts)
	t.Cleanup(srv.Close)
	return srv, &sts.Calls
}

func verifier(srv *httptest.Server) *aws.Verifier {
	return &aws.Verifier{Audiences: []string{broker}, Hosts: []string{strings.TrimPrefix(srv.URL, "https://")}, HTTP: srv.Client()}
}

func evidence(t testing.TB, endpoint, audience string, c sdkaws.Credentials, at time.Time) string {
	t.Helper()
	ev, err := aws.BuildEvidence(context.Background(), credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken), region, endpoint, audience, at)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestAttestAWS(t *testing.T) {
	srv, _ := fakeSTS(t)
	v := verifier(srv)
	id, err := v.Attest(context.Background(), attest.Evidence{Type: aws.TokenType, Token: []byte(evidence(t, srv.URL, broker, creds, time.Now()))})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"account": "111122223333", "role_name": "token-client-role", "session_name": "i-0fake0example00001",
		"role_arn": "arn:aws:iam::111122223333:role/token-client-role", "partition": "aws", "user_id": "AROAFAKEEXAMPLEROLEID:i-0fake0example00001"}
	for k, w := range want {
		if id.Attributes[k] != w {
			t.Errorf("attribute %s = %v, want %v", k, id.Attributes[k], w)
		}
	}
	if id.Subject != "arn:aws:iam::111122223333:role/token-client-role" || id.Provider != "aws" || !strings.HasPrefix(id.ReplayKey, "aws:") {
		t.Fatalf("identity %+v", id)
	}
}

func TestAttestAWSRefusals(t *testing.T) {
	srv, calls := fakeSTS(t)
	v := verifier(srv)
	trap := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("a non-allow-listed endpoint was contacted") }))
	defer trap.Close()
	wrongKey := creds
	wrongKey.SecretAccessKey = "not-the-secret"
	good := evidence(t, srv.URL, broker, creds, time.Now())
	raw, _ := url.QueryUnescape(good)
	// headers edits the serialized request's headers.
	headers := func(edit func(hs []map[string]string) []map[string]string) string {
		var req map[string]any
		if err := json.Unmarshal([]byte(raw), &req); err != nil {
			t.Fatal(err)
		}
		var hs []map[string]string
		b, _ := json.Marshal(req["headers"])
		json.Unmarshal(b, &hs)
		req["headers"] = edit(hs)
		out, _ := json.Marshal(req)
		return url.QueryEscape(string(out))
	}
	authorization := func(edit func(string) string) string {
		return headers(func(hs []map[string]string) []map[string]string {
			for _, h := range hs {
				if strings.EqualFold(h["key"], "Authorization") {
					h["value"] = edit(h["value"])
				}
			}
			return hs
		})
	}
	fakeSig := strings.Repeat("ab", 32)
	tests := []struct {
		name, token, reason string
		calls               int64 // STS calls the refusal may make
	}{
		{"another broker's evidence", evidence(t, srv.URL, "https://other-broker.example.com", creds, time.Now()), "wrong_audience", 0},
		{"stale signature", evidence(t, srv.URL, broker, creds, time.Now().Add(-20*time.Minute)), "token_expired", 0},
		{"endpoint not allow-listed", evidence(t, trap.URL, broker, creds, time.Now()), "untrusted_endpoint", 0},
		{"bad signature", evidence(t, srv.URL, broker, wrongKey, time.Now()), "sts_refused", 1},
		{"unsigned target", url.QueryEscape(strings.Replace(raw, ";x-mcpsts-audience", "", 1)), "unsigned_target", 0},
		{"another action", url.QueryEscape(strings.Replace(raw, "GetCallerIdentity", "AssumeRole", 1)), "malformed_token", 0},
		{"not URL-escaped JSON", "%zz", "malformed_token", 0},
		{"unknown fields", url.QueryEscape(`{"url":"x","evil":1}`), "malformed_token", 0},
		// Finding 7 of the security review: a request signed without the
		// target header, with components appended that name it.
		{"components appended to Authorization", authorization(func(a string) string {
			return strings.Replace(a, ";x-mcpsts-audience", "", 1) + ", SignedHeaders=host;x-amz-date;x-mcpsts-audience, Signature=" + fakeSig
		}), "malformed_token", 0},
		{"an unknown Authorization component", authorization(func(a string) string { return a + ", Foo=bar" }), "malformed_token", 0},
		{"Signature before SignedHeaders", authorization(func(a string) string {
			cred, rest, _ := strings.Cut(a, ", ")
			sh, sig, _ := strings.Cut(rest, ", ")
			return cred + ", " + sig + ", " + sh
		}), "malformed_token", 0},
		{"a signed header named twice", authorization(func(a string) string { return strings.Replace(a, "SignedHeaders=host;", "SignedHeaders=host;host;", 1) }), "malformed_token", 0},
		{"an upper-case signature", authorization(func(a string) string {
			i := strings.LastIndex(a, "Signature=") + len("Signature=")
			return a[:i] + strings.ToUpper(a[i:])
		}), "malformed_token", 0},
		{"two Authorization headers", headers(func(hs []map[string]string) []map[string]string {
			for _, h := range hs {
				if strings.EqualFold(h["key"], "Authorization") {
					return append(hs, map[string]string{"key": "Authorization", "value": strings.Replace(h["value"], ";x-mcpsts-audience", "", 1)})
				}
			}
			t.Fatal("no Authorization header")
			return nil
		}), "malformed_token", 0},
		{"the target header twice", headers(func(hs []map[string]string) []map[string]string {
			return append(hs, map[string]string{"key": "X-Mcpsts-Audience", "value": broker})
		}), "malformed_token", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := calls.Load()
			_, err := v.Attest(context.Background(), attest.Evidence{Token: []byte(tt.token)})
			if !errors.Is(err, attest.ErrInvalidEvidence) || attest.ReasonOf(err) != tt.reason {
				t.Fatalf("Attest = %v (reason %q), want %q", err, attest.ReasonOf(err), tt.reason)
			}
			if n := calls.Load() - before; n > tt.calls {
				t.Fatalf("%d STS calls for a refusal that needs %d", n, tt.calls)
			}
		})
	}
}

// hostGuard fails the fuzz run if evidence makes the verifier contact any
// host but the allow-listed one.
type hostGuard struct {
	allowed string
	next    http.RoundTripper
	strayed atomic.Value
}

func (g *hostGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != g.allowed {
		g.strayed.Store(r.URL.Host)
		return nil, errors.New("not allow-listed")
	}
	return g.next.RoundTrip(r)
}

func FuzzAttestAWS(f *testing.F) {
	srv, _ := fakeSTS(f)
	v := verifier(srv)
	guard := &hostGuard{allowed: strings.TrimPrefix(srv.URL, "https://"), next: srv.Client().Transport}
	v.HTTP = &http.Client{Transport: guard, Timeout: 5 * time.Second}
	valid := evidence(f, srv.URL, broker, creds, time.Now())
	f.Add(valid)
	f.Add(evidence(f, "https://127.0.0.1:1", broker, creds, time.Now()))
	f.Add(url.QueryEscape(`{"url":"https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15","method":"POST","headers":[]}`))
	f.Add("%7B")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		id, err := v.Attest(context.Background(), attest.Evidence{Type: aws.TokenType, Token: []byte(token)})
		if err == nil && (id.Subject == "" || id.ReplayKey == "") {
			t.Fatalf("accepted evidence without subject or replay key: %+v", id)
		}
		if err != nil && !errors.Is(err, attest.ErrInvalidEvidence) && !errors.Is(err, attest.ErrUnavailable) {
			t.Fatalf("error of no known kind: %v", err)
		}
		if h := guard.strayed.Load(); h != nil {
			t.Fatalf("the verifier contacted %v", h)
		}
	})
}
