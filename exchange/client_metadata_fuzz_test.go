package exchange

import "testing"

// FuzzClientMetadata: a document is accepted only when its client_id is the
// URL it came from and it names at least one redirect URI.
func FuzzClientMetadata(f *testing.F) {
	const from = "https://app.example.com/client.json"
	f.Add([]byte(`{"client_id":"https://app.example.com/client.json","client_name":"a","redirect_uris":["https://app.example.com/cb"]}`))
	f.Add([]byte(`{"client_id":"https://evil.example.com/client.json","client_name":"a","redirect_uris":["http://127.0.0.1/cb"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		md, err := parseClientMetadata(from, b)
		if err == nil && (md.ClientID != from || len(md.RedirectURIs) == 0 || md.ClientName == "") {
			t.Fatalf("accepted %+v", md)
		}
	})
}
