package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/issuer"
)

// TestRoutesWithIssuerPath checks the well-known paths of an issuer with a
// path component (RFC 8414 §3.1 insertion, OIDC appending).
func TestRoutesWithIssuerPath(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	kek, _ := issuer.GenerateKEK()
	k, _ := issuer.ParseKEK(kek)
	const issuerURL = "https://sts.example.com/tenant1"
	iss, err := issuer.New(issuer.Config{Issuer: issuerURL, Store: st, Local: &issuer.LocalKeys{KEK: k, Algorithm: issuer.ES256}})
	if err != nil {
		t.Fatal(err)
	}
	if err := iss.Start(ctx); err != nil {
		t.Fatal(err)
	}
	rec0 := tracetest.NewSpanRecorder()
	h, err := routes(routeConfig{issuer: issuerURL, store: st, iss: iss, token: http.NotFoundHandler(), log: slog.New(slog.DiscardHandler),
		traces: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec0))})
	if err != nil {
		t.Fatal(err)
	}
	// Every endpoint's request is a server span continuing the caller's
	// traceparent.
	for _, path := range []string{"/tenant1/.well-known/jwks.json", "/healthz", "/tenant1/authorize", "/nowhere"} {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		h.ServeHTTP(httptest.NewRecorder(), req)
		ended := rec0.Ended()
		s := ended[len(ended)-1]
		if s.SpanKind() != trace.SpanKindServer || s.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Parent().SpanID().String() != "00f067aa0ba902b7" {
			t.Errorf("GET %s: span %s kind %v trace %s parent %s", path, s.Name(), s.SpanKind(), s.SpanContext().TraceID(), s.Parent().SpanID())
		}
	}
	for _, path := range []string{"/.well-known/oauth-authorization-server/tenant1", "/tenant1/.well-known/openid-configuration"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		var doc map[string]string
		json.Unmarshal(rec.Body.Bytes(), &doc)
		if rec.Code != 200 || doc["issuer"] != issuerURL || doc["jwks_uri"] != issuerURL+"/.well-known/jwks.json" {
			t.Errorf("GET %s = %d %v", path, rec.Code, doc)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/tenant1/.well-known/jwks.json", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"kid"`) {
		t.Errorf("JWKS = %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/oauth-authorization-server", nil))
	if rec.Code != 404 {
		t.Errorf("metadata at the root for a path issuer = %d, want 404", rec.Code)
	}
}
