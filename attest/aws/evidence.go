package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// BuildEvidence is the agent side: it signs an sts:GetCallerIdentity
// request to endpoint (https://sts.REGION.amazonaws.com) for region with
// the credentials of creds (the SDK's default chain, usually), naming
// audience in the signed x-mcpsts-audience header, and serializes it as
// the subject_token of TokenType.
func BuildEvidence(ctx context.Context, creds sdkaws.CredentialsProvider, region, endpoint, audience string, now time.Time) (string, error) {
	c, err := creds.Retrieve(ctx)
	if err != nil {
		return "", fmt.Errorf("aws: credentials: %w", err)
	}
	u := strings.TrimSuffix(endpoint, "/") + "?Action=GetCallerIdentity&Version=2011-06-15"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return "", fmt.Errorf("aws: %w", err)
	}
	req.Header.Set(HeaderTarget, audience)
	empty := sha256.Sum256(nil)
	if err := v4.NewSigner().SignHTTP(ctx, c, req, hex.EncodeToString(empty[:]), "sts", region, now); err != nil {
		return "", fmt.Errorf("aws: sign: %w", err)
	}
	type header struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}
	headers := []header{{Key: "host", Value: req.URL.Host}}
	for k, vs := range req.Header {
		headers = append(headers, header{Key: k, Value: vs[0]})
	}
	sort.Slice(headers, func(i, j int) bool { return headers[i].Key < headers[j].Key })
	raw, err := json.Marshal(struct {
		URL     string   `json:"url"`
		Method  string   `json:"method"`
		Headers []header `json:"headers"`
	}{u, http.MethodPost, headers})
	if err != nil {
		return "", err
	}
	return url.QueryEscape(string(raw)), nil
}
