// Package awsfake helps loopback fakes of AWS services (in tests) check
// real SigV4 signatures: the signature is recomputed with the AWS SDK's own
// signer from the headers the request says it signed.
package awsfake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// CheckSigV4 returns why r's SigV4 signature (over body) is not a valid one
// by creds for service in region, or "".
func CheckSigV4(r *http.Request, body []byte, creds aws.Credentials, service, region string) string {
	auth := r.Header.Get("Authorization")
	const prefix = "AWS4-HMAC-SHA256 "
	if !strings.HasPrefix(auth, prefix) {
		return "missing SigV4 Authorization"
	}
	fields := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(auth, prefix), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	scope := "/" + region + "/" + service + "/aws4_request"
	if !strings.HasPrefix(fields["Credential"], creds.AccessKeyID+"/") || !strings.HasSuffix(fields["Credential"], scope) {
		return "credential scope " + fields["Credential"] + " is not for " + service + " in " + region
	}
	signingTime, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return "bad X-Amz-Date"
	}
	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" && h != payloadHash {
		return "payload hash mismatch"
	}
	clone, _ := http.NewRequest(r.Method, "https://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	clone.ContentLength = int64(len(body))
	for _, name := range strings.Split(fields["SignedHeaders"], ";") {
		switch name {
		case "host", "content-length":
			continue
		}
		clone.Header[http.CanonicalHeaderKey(name)] = r.Header.Values(name)
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, clone, payloadHash, service, region, signingTime); err != nil {
		return err.Error()
	}
	if clone.Header.Get("Authorization") != auth {
		return "The request signature we calculated does not match the signature you provided."
	}
	return ""
}
