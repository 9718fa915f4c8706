package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mcpsts/mcpsts/trustmaps"
)

var _ trustmaps.Repository = (*Store)(nil)

// Records implements trustmaps.Repository.
func (s *Store) Records(ctx context.Context) ([]trustmaps.Record, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, version, document, updated_at FROM trust_maps ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: read trust maps: %w", err)
	}
	defer rows.Close()
	var out []trustmaps.Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read trust maps: %w", err)
	}
	return out, nil
}

func scanRecord(row interface{ Scan(...any) error }) (trustmaps.Record, error) {
	var r trustmaps.Record
	var doc string
	var updated int64
	if err := row.Scan(&r.ID, &r.Version, &doc, &updated); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return r, trustmaps.ErrNotFound
		}
		return r, fmt.Errorf("store: read trust map: %w", err)
	}
	r.Document, r.UpdatedAt = []byte(doc), time.UnixMicro(updated).UTC()
	return r, nil
}

// Record implements trustmaps.Repository.
func (s *Store) Record(ctx context.Context, id string) (trustmaps.Record, error) {
	return scanRecord(s.db.QueryRowContext(ctx, s.dialect.rebind(
		`SELECT id, version, document, updated_at FROM trust_maps WHERE id = ?`), id))
}

// PutRecord implements trustmaps.Repository.
func (s *Store) PutRecord(ctx context.Context, id string, doc []byte, version int64) (trustmaps.Record, error) {
	now := s.now().Truncate(time.Microsecond)
	var res sql.Result
	var err error
	if version == 0 {
		res, err = s.db.ExecContext(ctx, s.dialect.rebind(
			`INSERT INTO trust_maps (id, version, document, updated_at) VALUES (?, 1, ?, ?) ON CONFLICT (id) DO NOTHING`),
			id, string(doc), now.UnixMicro())
	} else {
		res, err = s.db.ExecContext(ctx, s.dialect.rebind(
			`UPDATE trust_maps SET document = ?, version = version + 1, updated_at = ? WHERE id = ? AND version = ?`),
			string(doc), now.UnixMicro(), id, version)
	}
	if err != nil {
		return trustmaps.Record{}, fmt.Errorf("store: write trust map %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return trustmaps.Record{}, s.missOrConflict(ctx, id, version == 0)
	}
	return trustmaps.Record{ID: id, Version: version + 1, Document: doc, UpdatedAt: now.UTC()}, nil
}

// missOrConflict says why a conditional write wrote nothing.
func (s *Store) missOrConflict(ctx context.Context, id string, creating bool) error {
	_, err := s.Record(ctx, id)
	switch {
	case errors.Is(err, trustmaps.ErrNotFound) && !creating:
		return trustmaps.ErrNotFound
	case err == nil || errors.Is(err, trustmaps.ErrNotFound):
		return trustmaps.ErrConflict
	}
	return err
}

// DeleteRecord implements trustmaps.Repository.
func (s *Store) DeleteRecord(ctx context.Context, id string, version int64) error {
	res, err := s.db.ExecContext(ctx, s.dialect.rebind(`DELETE FROM trust_maps WHERE id = ? AND version = ?`), id, version)
	if err != nil {
		return fmt.Errorf("store: delete trust map %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return s.missOrConflict(ctx, id, false)
	}
	return nil
}
