package exchange_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/exchange"
)

func TestClientMetadataDocuments(t *testing.T) {
	var hits atomic.Int64
	var ts *httptest.Server
	docs := map[string]string{}
	ts = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/redirect.json":
			http.Redirect(w, r, "/client.json", http.StatusFound)
			return
		case "/big.json":
			w.Write([]byte(`{"client_id":"` + ts.URL + `/big.json","client_name":"` + strings.Repeat("x", 20<<10) + `"}`))
			return
		}
		doc, ok := docs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write([]byte(doc))
	}))
	defer ts.Close()
	docs["/client.json"] = `{"client_id":"` + ts.URL + `/client.json","client_name":"Desktop agent","redirect_uris":["http://127.0.0.1/cb","https://app.example.com/cb"],"token_endpoint_auth_method":"none"}`
	docs["/other.json"] = `{"client_id":"https://evil.example.com/client.json","client_name":"x","redirect_uris":["https://evil.example.com/cb"]}`
	docs["/secret.json"] = `{"client_id":"` + ts.URL + `/secret.json","client_name":"x","redirect_uris":["https://app.example.com/cb"],"token_endpoint_auth_method":"client_secret_basic"}`
	docs["/nocb.json"] = `{"client_id":"` + ts.URL + `/nocb.json","client_name":"x","redirect_uris":["http://app.example.com/cb"]}`
	docs["/notjson.json"] = `<html>`
	docs["/bidi.json"] = `{"client_id":"` + ts.URL + `/bidi.json","client_name":"Mail \u202eppA","redirect_uris":["https://app.example.com/cb"]}`

	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	d := exchange.NewClientMetadataDocuments(exchange.ClientMetadataOptions{Transport: ts.Client().Transport, AllowPrivateAddresses: true, Clock: func() time.Time { return now }})
	ctx := context.Background()
	md, err := d.Get(ctx, ts.URL+"/client.json")
	if err != nil || md.ClientName != "Desktop agent" || len(md.RedirectURIs) != 2 {
		t.Fatalf("Get = %+v, %v", md, err)
	}
	before := hits.Load()
	if _, err := d.Get(ctx, ts.URL+"/client.json"); err != nil || hits.Load() != before {
		t.Fatalf("a cached document was fetched again (%v)", err)
	}
	now = now.Add(11 * time.Minute) // past max-age=600
	if _, err := d.Get(ctx, ts.URL+"/client.json"); err != nil || hits.Load() != before+1 {
		t.Fatalf("an expired entry was not fetched again (%v)", err)
	}

	for _, tc := range []struct {
		name, url, want string
		fetches         bool
	}{
		{"client_id is not the URL", ts.URL + "/other.json", `client_id: "https://evil.example.com/client.json" is not the document's URL`, true},
		{"a redirect", ts.URL + "/redirect.json", "redirect to https://", true},
		{"oversized", ts.URL + "/big.json", "response larger than 16384 bytes", true},
		{"not JSON", ts.URL + "/notjson.json", "not a JSON object", true},
		{"a secret-holding client", ts.URL + "/secret.json", `token_endpoint_auth_method: "client_secret_basic" needs a secret`, true},
		{"an http redirect URI off loopback", ts.URL + "/nocb.json", "redirect_uris[0]", true},
		{"not found", ts.URL + "/missing.json", "status 404", true},
		{"a name with a bidi override (issue 32)", ts.URL + "/bidi.json", "client_name: no control, format or bidirectional characters", true},
		{"http", strings.Replace(ts.URL, "https", "http", 1) + "/client.json", "is not an https URL", false},
		{"no path", ts.URL, "has no path", false},
		{"a fragment", ts.URL + "/client.json#x", "has a fragment", false},
		{"user information", strings.Replace(ts.URL, "https://", "https://u@", 1) + "/client.json", "holds user information", false},
		{"dot segments", ts.URL + "/a/../client.json", "has dot segments", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			_, err := d.Get(ctx, tc.url)
			if !errors.Is(err, exchange.ErrClientMetadata) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Get(%s) = %v, want an error containing %q", tc.url, err, tc.want)
			}
			if fetched := hits.Load() > before; fetched != tc.fetches {
				t.Fatalf("fetched %v, want %v", fetched, tc.fetches)
			}
		})
	}

	// Issue 32: a failure is remembered for 30 s (one fetch for a page of
	// requests naming a dead or hostile URL), then asked again; many
	// requests at once for one URL make one fetch.
	before = hits.Load()
	for range 5 {
		if _, err := d.Get(ctx, ts.URL+"/missing.json"); err == nil || !strings.Contains(err.Error(), "status 404") {
			t.Fatalf("a missing document: %v", err)
		}
	}
	if hits.Load() != before {
		t.Fatalf("a failure remembered: %d fetches, want none", hits.Load()-before)
	}
	now = now.Add(31 * time.Second)
	if d.Get(ctx, ts.URL+"/missing.json"); hits.Load() != before+1 {
		t.Fatalf("a failure forgotten after 30 s: %d fetches, want 1", hits.Load()-before)
	}
	now = now.Add(time.Hour) // every entry expired
	before = hits.Load()
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() { defer wg.Done(); d.Get(ctx, ts.URL+"/client.json") }()
	}
	wg.Wait()
	if n := hits.Load() - before; n < 1 || n > 2 {
		t.Fatalf("20 requests at once for one document: %d fetches, want 1 (2 if one began after the first ended)", n)
	}

	// Without the test allowance, a document on a loopback address (by
	// IP or by a name that resolves to one) is never fetched: SSRF.
	strict := exchange.NewClientMetadataDocuments(exchange.ClientMetadataOptions{Transport: ts.Client().Transport})
	for _, u := range []string{ts.URL + "/client.json", strings.Replace(ts.URL, "127.0.0.1", "localhost", 1) + "/client.json"} {
		before := hits.Load()
		if _, err := strict.Get(ctx, u); err == nil || !strings.Contains(err.Error(), "is not a public address") {
			t.Errorf("Get(%s) = %v, want a refusal of the address", u, err)
		}
		if hits.Load() != before {
			t.Errorf("Get(%s) reached the server", u)
		}
	}
}
