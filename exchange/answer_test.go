package exchange

import (
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// FuzzReadForm: the token endpoint's form parser agrees with
// url.ParseQuery on every body: the same values, or an error for both.
func FuzzReadForm(f *testing.F) {
	for _, s := range []string{"grant_type=a&scope=b+c", "a=%zz", "a;b=c", "resource=x&resource=y", "=v&n=", "a%3Db=c%26d", "&&a=1&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		got, tooBig, err := readForm(strings.NewReader(body), 1<<20)
		want, werr := url.ParseQuery(body)
		switch {
		case tooBig:
			t.Fatal("too big")
		case (err != nil) != (werr != nil):
			t.Fatalf("%q: err %v, url.ParseQuery %v", body, err, werr)
		case err == nil && !reflect.DeepEqual(got, want):
			t.Fatalf("%q: %v, url.ParseQuery %v", body, got, want)
		}
	})
}

func TestWriteToken(t *testing.T) {
	for _, resp := range []tokenResponse{
		{AccessToken: "a.b.c", TokenType: "Bearer", ExpiresIn: 900, Scope: "files:read files:write"},
		{AccessToken: "a.b.c", IssuedTokenType: "urn:ietf:params:oauth:token-type:id-jag", TokenType: "N_A", ExpiresIn: 300, RefreshToken: "r"},
		{AccessToken: "x", TokenType: "DPoP", ExpiresIn: 1, Scope: "é \"<q>\" \\"},
	} {
		w := httptest.NewRecorder()
		writeToken(w, &resp)
		var want strings.Builder
		jsonEncode(&want, resp)
		if w.Body.String() != want.String() || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Content-Length") == "" {
			t.Errorf("%s\nwant %s", w.Body.String(), want.String())
		}
	}
}

func jsonEncode(w *strings.Builder, v any) { json.NewEncoder(w).Encode(v) }
