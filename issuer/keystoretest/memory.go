package keystoretest

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/mcpsts/mcpsts/issuer"
)

// Memory is an in-process issuer.KeyStore for tests of the issuer's users.
// It passes the suite, so it keeps the same contract as the SQL store.
type Memory struct {
	mu   sync.Mutex
	keys map[string]issuer.KeyRecord
}

var _ issuer.KeyStore = (*Memory)(nil)

// NewMemory returns an empty store.
func NewMemory() *Memory { return &Memory{keys: map[string]issuer.KeyRecord{}} }

// Keys implements issuer.KeyStore.
func (m *Memory) Keys(ctx context.Context) ([]issuer.KeyRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.list(), nil
}

func (m *Memory) list() []issuer.KeyRecord {
	out := make([]issuer.KeyRecord, 0, len(m.keys))
	for _, k := range m.keys {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].ActivateAt.Equal(out[j].ActivateAt) {
			return out[i].ActivateAt.Before(out[j].ActivateAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// UpdateKeys implements issuer.KeyStore.
func (m *Memory) UpdateKeys(ctx context.Context, fn func([]issuer.KeyRecord) (issuer.KeyChange, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	change, err := fn(m.list())
	if err != nil {
		return err
	}
	next := make(map[string]issuer.KeyRecord, len(m.keys))
	for id, k := range m.keys {
		next[id] = k
	}
	for _, id := range change.Remove {
		delete(next, id)
	}
	for _, k := range change.Add {
		if _, dup := next[k.ID]; dup {
			return fmt.Errorf("keystoretest: key %s exists", k.ID)
		}
		next[k.ID] = k
	}
	m.keys = next
	return nil
}

// Tamper lets a test alter a stored record in place.
func (m *Memory) Tamper(kid string, fn func(*issuer.KeyRecord)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.keys[kid]
	fn(&k)
	m.keys[kid] = k
}
