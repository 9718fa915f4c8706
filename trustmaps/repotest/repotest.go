// Package repotest is the conformance suite for trustmaps.Repository.
package repotest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/mcpsts/mcpsts/trustmaps"
)

// Run runs the suite against repositories made by newRepo (each fresh).
func Run(t *testing.T, newRepo func(t *testing.T) trustmaps.Repository) {
	ctx := context.Background()
	doc := func(n int) []byte { return []byte(fmt.Sprintf(`{"id":"m","n":%d}`, n)) }
	tests := []struct {
		name string
		run  func(t *testing.T, r trustmaps.Repository)
	}{
		{"create, read, list", func(t *testing.T, r trustmaps.Repository) {
			rec, err := r.PutRecord(ctx, "m", doc(1), 0)
			if err != nil || rec.Version != 1 || string(rec.Document) != string(doc(1)) || rec.UpdatedAt.IsZero() {
				t.Fatalf("create = %+v, %v", rec, err)
			}
			got, err := r.Record(ctx, "m")
			if err != nil || got.Version != 1 || string(got.Document) != string(doc(1)) {
				t.Fatalf("Record = %+v, %v", got, err)
			}
			r.PutRecord(ctx, "a", doc(2), 0)
			all, err := r.Records(ctx)
			if err != nil || len(all) != 2 || all[0].ID != "a" || all[1].ID != "m" {
				t.Fatalf("Records = %+v, %v (want ordered by id)", all, err)
			}
		}},
		{"create twice conflicts", func(t *testing.T, r trustmaps.Repository) {
			r.PutRecord(ctx, "m", doc(1), 0)
			if _, err := r.PutRecord(ctx, "m", doc(2), 0); !errors.Is(err, trustmaps.ErrConflict) {
				t.Fatalf("second create = %v, want ErrConflict", err)
			}
		}},
		{"replace needs the current version", func(t *testing.T, r trustmaps.Repository) {
			r.PutRecord(ctx, "m", doc(1), 0)
			rec, err := r.PutRecord(ctx, "m", doc(2), 1)
			if err != nil || rec.Version != 2 {
				t.Fatalf("replace at version 1 = %+v, %v", rec, err)
			}
			if _, err := r.PutRecord(ctx, "m", doc(3), 1); !errors.Is(err, trustmaps.ErrConflict) {
				t.Fatalf("replace at a stale version = %v, want ErrConflict", err)
			}
			if _, err := r.PutRecord(ctx, "none", doc(3), 1); !errors.Is(err, trustmaps.ErrNotFound) {
				t.Fatalf("replace of a missing map = %v, want ErrNotFound", err)
			}
			got, _ := r.Record(ctx, "m")
			if string(got.Document) != string(doc(2)) {
				t.Fatalf("a refused replace changed the map: %s", got.Document)
			}
		}},
		{"delete needs the current version", func(t *testing.T, r trustmaps.Repository) {
			r.PutRecord(ctx, "m", doc(1), 0)
			if err := r.DeleteRecord(ctx, "m", 7); !errors.Is(err, trustmaps.ErrConflict) {
				t.Fatalf("delete at a wrong version = %v", err)
			}
			if err := r.DeleteRecord(ctx, "m", 1); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Record(ctx, "m"); !errors.Is(err, trustmaps.ErrNotFound) {
				t.Fatalf("Record after delete = %v", err)
			}
			if err := r.DeleteRecord(ctx, "m", 1); !errors.Is(err, trustmaps.ErrNotFound) {
				t.Fatalf("second delete = %v", err)
			}
		}},
		{"concurrent replaces: one wins per version", func(t *testing.T, r trustmaps.Repository) {
			r.PutRecord(ctx, "m", doc(0), 0)
			const n = 8
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Add(1)
				go func() { defer wg.Done(); _, errs[i] = r.PutRecord(ctx, "m", doc(i), 1) }()
			}
			wg.Wait()
			won := 0
			for _, err := range errs {
				switch {
				case err == nil:
					won++
				case !errors.Is(err, trustmaps.ErrConflict):
					t.Fatalf("unexpected error %v", err)
				}
			}
			if won != 1 {
				t.Fatalf("%d replaces at version 1 succeeded, want 1", won)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newRepo(t)) })
	}
}
