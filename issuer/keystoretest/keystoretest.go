// Package keystoretest is the conformance suite for issuer.KeyStore. Every
// implementation runs it.
package keystoretest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/issuer"
)

// Factory returns a fresh, empty key store.
type Factory func(t *testing.T) issuer.KeyStore

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func record(kid string, activate time.Time) issuer.KeyRecord {
	return issuer.KeyRecord{
		ID: kid, Algorithm: issuer.ES256, Backend: "local",
		PublicKey: []byte("public " + kid), Sealed: []byte{0, 1, 2, 0xff, byte(len(kid))},
		CreatedAt: t0.Add(123456 * time.Microsecond), ActivateAt: activate,
	}
}

func add(recs ...issuer.KeyRecord) func([]issuer.KeyRecord) (issuer.KeyChange, error) {
	return func([]issuer.KeyRecord) (issuer.KeyChange, error) { return issuer.KeyChange{Add: recs}, nil }
}

func ids(keys []issuer.KeyRecord) []string {
	out := []string{}
	for _, k := range keys {
		out = append(out, k.ID)
	}
	return out
}

// Run runs the suite against stores made by newStore.
func Run(t *testing.T, newStore Factory) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T, s issuer.KeyStore)
	}{
		{"empty", func(t *testing.T, s issuer.KeyStore) {
			keys, err := s.Keys(ctx)
			if err != nil || len(keys) != 0 {
				t.Fatalf("Keys = %v, %v; want none", keys, err)
			}
		}},
		{"round trip", func(t *testing.T, s issuer.KeyStore) {
			ext := record("kms-1", t0.Add(time.Hour))
			ext.Backend, ext.Sealed, ext.ExternalID = "awskms", nil, "arn:aws:kms:eu-west-1:111122223333:key/abc"
			want := []issuer.KeyRecord{record("a", t0), ext}
			if err := s.UpdateKeys(ctx, add(want...)); err != nil {
				t.Fatal(err)
			}
			got, err := s.Keys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Keys =\n%+v\nwant\n%+v", got, want)
			}
		}},
		{"ordered by activation", func(t *testing.T, s issuer.KeyStore) {
			if err := s.UpdateKeys(ctx, add(record("late", t0.Add(2*time.Hour)), record("early", t0), record("mid", t0.Add(time.Hour)))); err != nil {
				t.Fatal(err)
			}
			got, _ := s.Keys(ctx)
			if fmt.Sprint(ids(got)) != "[early mid late]" {
				t.Fatalf("order = %v", ids(got))
			}
		}},
		{"callback sees current keys and removes", func(t *testing.T, s issuer.KeyStore) {
			s.UpdateKeys(ctx, add(record("a", t0), record("b", t0.Add(time.Hour))))
			err := s.UpdateKeys(ctx, func(keys []issuer.KeyRecord) (issuer.KeyChange, error) {
				if fmt.Sprint(ids(keys)) != "[a b]" {
					return issuer.KeyChange{}, fmt.Errorf("callback saw %v", ids(keys))
				}
				return issuer.KeyChange{Remove: []string{"a"}, Add: []issuer.KeyRecord{record("c", t0.Add(2*time.Hour))}}, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := s.Keys(ctx)
			if fmt.Sprint(ids(got)) != "[b c]" {
				t.Fatalf("after update: %v", ids(got))
			}
		}},
		{"callback error writes nothing", func(t *testing.T, s issuer.KeyStore) {
			s.UpdateKeys(ctx, add(record("a", t0)))
			boom := errors.New("boom")
			err := s.UpdateKeys(ctx, func([]issuer.KeyRecord) (issuer.KeyChange, error) {
				return issuer.KeyChange{Remove: []string{"a"}, Add: []issuer.KeyRecord{record("b", t0)}}, boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("UpdateKeys = %v, want the callback's error", err)
			}
			got, _ := s.Keys(ctx)
			if fmt.Sprint(ids(got)) != "[a]" {
				t.Fatalf("after failed update: %v", ids(got))
			}
		}},
		{"failed write is atomic", func(t *testing.T, s issuer.KeyStore) {
			s.UpdateKeys(ctx, add(record("a", t0), record("b", t0)))
			err := s.UpdateKeys(ctx, func([]issuer.KeyRecord) (issuer.KeyChange, error) {
				return issuer.KeyChange{Remove: []string{"a"}, Add: []issuer.KeyRecord{record("b", t0)}}, nil // b exists
			})
			if err == nil {
				t.Fatal("adding an existing kid succeeded")
			}
			got, _ := s.Keys(ctx)
			if fmt.Sprint(ids(got)) != "[a b]" {
				t.Fatalf("after failed write: %v (the removal must be rolled back)", ids(got))
			}
		}},
		{"concurrent updates are serialized", func(t *testing.T, s issuer.KeyStore) {
			const n = 8
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = s.UpdateKeys(ctx, func(keys []issuer.KeyRecord) (issuer.KeyChange, error) {
						// Each update names its key after what it read: a
						// lost update would reuse a name and fail.
						return issuer.KeyChange{Add: []issuer.KeyRecord{record(fmt.Sprintf("k%d", len(keys)), t0)}}, nil
					})
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("update %d: %v", i, err)
				}
			}
			got, _ := s.Keys(ctx)
			if len(got) != n {
				t.Fatalf("%d keys after %d serialized updates: %v", len(got), n, ids(got))
			}
		}},
		{"only one of racing creators adds", func(t *testing.T, s issuer.KeyStore) {
			const n = 8
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.UpdateKeys(ctx, func(keys []issuer.KeyRecord) (issuer.KeyChange, error) {
						if len(keys) > 0 {
							return issuer.KeyChange{}, nil
						}
						return issuer.KeyChange{Add: []issuer.KeyRecord{record(fmt.Sprintf("r%d", i), t0)}}, nil
					})
				}()
			}
			wg.Wait()
			got, _ := s.Keys(ctx)
			if len(got) != 1 {
				t.Fatalf("%d keys, want exactly 1: %v", len(got), ids(got))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newStore(t)) })
	}
}
