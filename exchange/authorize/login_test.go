package authorize

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"golang.org/x/oauth2"

	"github.com/mcpsts/mcpsts/attest"
)

// idTokenAttestor accepts any token as a person whose ID token says aud
// and nonce: what the provider's verifier would report.
type idTokenAttestor struct {
	aud   any
	nonce string
}

func (a idTokenAttestor) Attest(context.Context, attest.Evidence) (attest.Identity, error) {
	return attest.Identity{Kind: "user", Provider: "corp", Subject: "alice", Attributes: map[string]any{"aud": a.aud, "nonce": a.nonce}}, nil
}

// TestOIDCLoginFinish: the upstream's ID token must be addressed to
// mcpsts's client ID there (one audience or a list holding it) and carry
// the flow's nonce; anything else is ErrLoginInvalid.
func TestOIDCLoginFinish(t *testing.T) {
	idp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"access_token":"at","token_type":"Bearer","id_token":"h.p.s"}`))
	}))
	t.Cleanup(idp.Close)
	for _, tc := range []struct {
		name  string
		aud   any
		nonce string
		ok    bool
	}{
		{"our client ID", "mcpsts", "n-1", true},
		{"a list holding our client ID", []any{"other", "mcpsts"}, "n-1", true},
		{"another client's ID token", "another-client", "n-1", false},
		{"a list without our client ID", []any{"other", "third"}, "n-1", false},
		{"no aud", nil, "n-1", false},
		{"another flow's nonce", "mcpsts", "n-2", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &OIDCLogin{OAuth2: oauth2.Config{ClientID: "mcpsts", Endpoint: oauth2.Endpoint{TokenURL: idp.URL + "/token"}},
				IDTokens: idTokenAttestor{aud: tc.aud, nonce: tc.nonce}, HTTPClient: idp.Client()}
			r := httptest.NewRequest(http.MethodGet, "/login/callback?code=c-1&state=s", nil)
			id, err := l.Finish(context.Background(), r, Flow{Nonce: "n-1", Verifier: "v"})
			switch {
			case tc.ok && (err != nil || id.Subject != "alice"):
				t.Fatalf("Finish = %+v, %v; want alice", id, err)
			case !tc.ok && !errors.Is(err, ErrLoginInvalid):
				t.Fatalf("Finish = %+v, %v; want ErrLoginInvalid", id, err)
			}
		})
	}
}
