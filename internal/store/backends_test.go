package store

import (
	"context"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/internal/store/storetest"
)

func backends(t *testing.T) []storetest.Backend { return storetest.Backends(t) }

// openTest opens a store on url with clock, closed when the test ends.
func openTest(t testing.TB, rawURL string, now func() time.Time) *Store {
	t.Helper()
	s, err := Open(context.Background(), rawURL, WithClock(now))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
