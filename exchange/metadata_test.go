package exchange

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
)

func TestPathsFor(t *testing.T) {
	tests := []struct {
		issuer  string
		want    Paths
		wantErr bool
	}{
		{"https://sts.example.com", Paths{
			OAuth: "/.well-known/oauth-authorization-server", OIDC: "/.well-known/openid-configuration",
			JWKS: "/.well-known/jwks.json", Token: "/token", Authorize: "/authorize", Base: "", Origin: "https://sts.example.com",
		}, false},
		{"https://sts.example.com/", Paths{
			OAuth: "/.well-known/oauth-authorization-server", OIDC: "/.well-known/openid-configuration",
			JWKS: "/.well-known/jwks.json", Token: "/token", Authorize: "/authorize", Base: "", Origin: "https://sts.example.com",
		}, false},
		{"https://sts.example.com/tenant/1", Paths{
			OAuth: "/.well-known/oauth-authorization-server/tenant/1", OIDC: "/tenant/1/.well-known/openid-configuration",
			JWKS: "/tenant/1/.well-known/jwks.json", Token: "/tenant/1/token", Authorize: "/tenant/1/authorize", Base: "/tenant/1", Origin: "https://sts.example.com",
		}, false},
		{"http://sts.example.com", Paths{}, true},
		{"https://sts.example.com/?q", Paths{}, true},
		{"https://sts.example.com/#f", Paths{}, true},
		{"https://sts.example.com/{x}", Paths{}, true},
	}
	for _, tt := range tests {
		got, err := PathsFor(tt.issuer)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("PathsFor(%q) = %+v, %v; want %+v (error %v)", tt.issuer, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestMetadataHandlerOmitsEmpty(t *testing.T) {
	h, err := MetadataHandler(Metadata{Issuer: "https://sts.example.com", JWKSURI: "https://sts.example.com/.well-known/jwks.json"})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/oauth-authorization-server", nil))
	var doc map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	// response_types_supported is REQUIRED by RFC 8414 §2: present, empty.
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" || len(doc) != 3 || fmt.Sprint(doc["response_types_supported"]) != "[]" {
		t.Fatalf("got %d %s %v; want exactly issuer, jwks_uri and an empty response_types_supported", rec.Code, rec.Header().Get("Content-Type"), doc)
	}
	if _, err := MetadataHandler(Metadata{}); err == nil {
		t.Fatal("metadata without issuer accepted")
	}
}
