package trustmaps

import (
	"context"
	"errors"
	"time"
)

// Record is a trust map kept in a store: its document (the map as JSON)
// and a version that every write increments, for optimistic concurrency.
type Record struct {
	ID        string
	Version   int64
	Document  []byte
	UpdatedAt time.Time
}

// Repository errors.
var (
	ErrNotFound = errors.New("trustmaps: no such map")
	ErrConflict = errors.New("trustmaps: version conflict")
)

// Repository keeps trust maps managed through the admin API. It must be
// safe for concurrent use, by several processes sharing its store.
//
// PutRecord with version 0 creates the map (ErrConflict if it exists);
// with a version it replaces the map only if that is its current version
// (ErrConflict if not, ErrNotFound if there is no map). It returns the
// record as written. DeleteRecord follows the same version rule.
type Repository interface {
	Records(ctx context.Context) ([]Record, error)
	Record(ctx context.Context, id string) (Record, error)
	PutRecord(ctx context.Context, id string, doc []byte, version int64) (Record, error)
	DeleteRecord(ctx context.Context, id string, version int64) error
}

// RepositorySource is the Source of the maps in a repository.
type RepositorySource struct{ Repo Repository }

// Documents implements Source.
func (s RepositorySource) Documents(ctx context.Context) ([]Document, error) {
	recs, err := s.Repo.Records(ctx)
	if err != nil {
		return nil, err
	}
	docs := make([]Document, len(recs))
	for i, r := range recs {
		docs[i] = Document{Name: "store:" + r.ID, Data: r.Document}
	}
	return docs, nil
}

// Sources joins several sources into one.
type Sources []Source

// Documents implements Source.
func (ss Sources) Documents(ctx context.Context) ([]Document, error) {
	var out []Document
	for _, s := range ss {
		docs, err := s.Documents(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, docs...)
	}
	return out, nil
}
