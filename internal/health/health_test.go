package health

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestLive(t *testing.T) {
	rec := httptest.NewRecorder()
	Live().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 || rec.Body.String() != "{\"status\":\"ok\"}\n" {
		t.Fatalf("got %d %q", rec.Code, rec.Body)
	}
}

func TestReady(t *testing.T) {
	ok := Check{"store", func(context.Context) error { return nil }}
	bad := Check{"keys", func(context.Context) error { return errors.New("secret internal detail") }}
	slow := Check{"slow", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
	tests := []struct {
		name     string
		checks   []Check
		wantCode int
		wantBody string
	}{
		{"all pass", []Check{ok}, 200, `{"status":"ok"}`},
		{"no checks", nil, 200, `{"status":"ok"}`},
		{"one fails", []Check{ok, bad}, 503, `{"failing":["keys"],"status":"unavailable"}`},
		{"timeout", []Check{slow, ok}, 503, `{"failing":["slow"],"status":"unavailable"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			h := Ready(50*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)), tt.checks...)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			if rec.Code != tt.wantCode || strings.TrimSpace(rec.Body.String()) != tt.wantBody {
				t.Fatalf("got %d %s, want %d %s", rec.Code, rec.Body, tt.wantCode, tt.wantBody)
			}
			if strings.Contains(rec.Body.String(), "secret") {
				t.Fatal("readiness body leaks a check's error")
			}
			if tt.wantCode == 503 && !strings.Contains(logs.String(), "readiness check failed") {
				t.Fatal("failed check not logged")
			}
		})
	}
}
