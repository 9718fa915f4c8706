package terraform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// adminClient calls the mcpsts admin API. It is safe for concurrent use.
type adminClient struct {
	origin string // scheme://host of the issuer
	issuer string
	http   *http.Client
	// token returns a bearer token for the admin API, "" when the client
	// authenticates with its TLS client certificate.
	token func(ctx context.Context) (string, error)
}

// apiError is an answer of the admin API other than success.
type apiError struct {
	Status      int
	Code        string   `json:"error"`
	Description string   `json:"error_description"`
	Problems    []string `json:"problems"`
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("mcpsts admin API: %d %s: %s", e.Status, e.Code, e.Description)
	if len(e.Problems) > 0 {
		msg += "\n  " + strings.Join(e.Problems, "\n  ")
	}
	return msg
}

func isStatus(err error, status int) bool {
	var e *apiError
	return errors.As(err, &e) && e.Status == status
}

// do sends a request to path (under the issuer's origin) with body as
// JSON, and decodes a successful answer into out. It returns the ETag.
func (c *adminClient) do(ctx context.Context, method, path string, body any, header map[string]string, out any) (string, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return "", err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.origin+path, rd)
	if err != nil {
		return "", err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if c.token != nil {
		tok, err := c.token(ctx)
		if err != nil {
			return "", fmt.Errorf("mcpsts admin token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("mcpsts admin API unreachable: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode >= 300 {
		e := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(raw, e) != nil || e.Code == "" {
			e.Code, e.Description = http.StatusText(resp.StatusCode), strings.TrimSpace(string(raw))
		}
		return "", e
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return "", fmt.Errorf("mcpsts admin API: %s %s: not the expected JSON: %w", method, path, err)
		}
	}
	return resp.Header.Get("ETag"), nil
}

// wellKnown fetches a public document of the broker (no authorization).
func (c *adminClient) wellKnown(ctx context.Context, rawURL string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("mcpsts unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", rawURL, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out)
}

// metadataURL is the RFC 8414 document of the issuer.
func (c *adminClient) metadataURL() string {
	u, _ := url.Parse(c.issuer)
	return c.origin + "/.well-known/oauth-authorization-server" + strings.TrimSuffix(u.EscapedPath(), "/")
}
