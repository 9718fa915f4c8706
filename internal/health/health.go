// Package health serves the liveness and readiness endpoints.
package health

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"
)

// Check is one readiness condition, such as "the store answers". Check
// functions must be safe for concurrent use and return promptly once ctx
// is done.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// Live answers 200 while the process serves requests (/healthz).
func Live() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
}

// Ready runs every check within timeout and answers 200 when all pass, 503
// otherwise (/readyz). The body names the failing checks only; their errors
// go to log, since they may describe internals.
func Ready(timeout time.Duration, log *slog.Logger, checks ...Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		failing := []string{}
		for _, c := range checks {
			if err := c.Check(ctx); err != nil {
				failing = append(failing, c.Name)
				log.Warn("readiness check failed", "check", c.Name, "error", err)
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "application/json")
		body := map[string]any{"status": "ok"}
		if len(failing) > 0 {
			body = map[string]any{"status": "unavailable", "failing": failing}
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(body)
	})
}
