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

// documents is a table of versioned JSON documents by ID, written with
// optimistic concurrency: trust maps, federation providers, clients. It
// implements trustmaps.Repository.
type documents struct {
	s     *Store
	table string // a constant of this package, never input
	what  string // for errors: "trust map"
}

var _ trustmaps.Repository = documents{}

// FederationProviders is the repository of trusted providers managed
// through the admin API.
func (s *Store) FederationProviders() trustmaps.Repository {
	return documents{s, "federation_providers", "federation provider"}
}

// PostureSources is the repository of posture sources managed through
// the admin API.
func (s *Store) PostureSources() trustmaps.Repository {
	return documents{s, "posture_sources", "posture source"}
}

// Clients is the repository of registered MCP clients.
func (s *Store) Clients() trustmaps.Repository { return documents{s, "clients", "client"} }

func (s *Store) trustMaps() documents { return documents{s, "trust_maps", "trust map"} }

// Records implements trustmaps.Repository.
func (s *Store) Records(ctx context.Context) ([]trustmaps.Record, error) {
	return s.trustMaps().Records(ctx)
}

// Record implements trustmaps.Repository.
func (s *Store) Record(ctx context.Context, id string) (trustmaps.Record, error) {
	return s.trustMaps().Record(ctx, id)
}

// PutRecord implements trustmaps.Repository.
func (s *Store) PutRecord(ctx context.Context, id string, doc []byte, version int64) (trustmaps.Record, error) {
	return s.trustMaps().PutRecord(ctx, id, doc, version)
}

// DeleteRecord implements trustmaps.Repository.
func (s *Store) DeleteRecord(ctx context.Context, id string, version int64) error {
	return s.trustMaps().DeleteRecord(ctx, id, version)
}

func (d documents) Records(ctx context.Context) ([]trustmaps.Record, error) {
	rows, err := d.s.db.QueryContext(ctx, `SELECT id, version, document, updated_at FROM `+d.table+` ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: read %ss: %w", d.what, err)
	}
	defer rows.Close()
	var out []trustmaps.Record
	for rows.Next() {
		r, err := d.scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read %ss: %w", d.what, err)
	}
	return out, nil
}

func (d documents) scan(row interface{ Scan(...any) error }) (trustmaps.Record, error) {
	var r trustmaps.Record
	var doc string
	var updated int64
	if err := row.Scan(&r.ID, &r.Version, &doc, &updated); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return r, trustmaps.ErrNotFound
		}
		return r, fmt.Errorf("store: read %s: %w", d.what, err)
	}
	r.Document, r.UpdatedAt = []byte(doc), time.UnixMicro(updated).UTC()
	return r, nil
}

func (d documents) Record(ctx context.Context, id string) (trustmaps.Record, error) {
	return d.scan(d.s.db.QueryRowContext(ctx, d.s.dialect.rebind(
		`SELECT id, version, document, updated_at FROM `+d.table+` WHERE id = ?`), id))
}

func (d documents) PutRecord(ctx context.Context, id string, doc []byte, version int64) (trustmaps.Record, error) {
	now := d.s.now().Truncate(time.Microsecond)
	var res sql.Result
	var err error
	if version == 0 {
		res, err = d.s.db.ExecContext(ctx, d.s.dialect.rebind(
			`INSERT INTO `+d.table+` (id, version, document, updated_at) VALUES (?, 1, ?, ?) ON CONFLICT (id) DO NOTHING`),
			id, string(doc), now.UnixMicro())
	} else {
		res, err = d.s.db.ExecContext(ctx, d.s.dialect.rebind(
			`UPDATE `+d.table+` SET document = ?, version = version + 1, updated_at = ? WHERE id = ? AND version = ?`),
			string(doc), now.UnixMicro(), id, version)
	}
	if err != nil {
		return trustmaps.Record{}, fmt.Errorf("store: write %s %s: %w", d.what, id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return trustmaps.Record{}, d.missOrConflict(ctx, id, version == 0)
	}
	return trustmaps.Record{ID: id, Version: version + 1, Document: doc, UpdatedAt: now.UTC()}, nil
}

// missOrConflict says why a conditional write wrote nothing.
func (d documents) missOrConflict(ctx context.Context, id string, creating bool) error {
	_, err := d.Record(ctx, id)
	switch {
	case errors.Is(err, trustmaps.ErrNotFound) && !creating:
		return trustmaps.ErrNotFound
	case err == nil || errors.Is(err, trustmaps.ErrNotFound):
		return trustmaps.ErrConflict
	}
	return err
}

func (d documents) DeleteRecord(ctx context.Context, id string, version int64) error {
	res, err := d.s.db.ExecContext(ctx, d.s.dialect.rebind(`DELETE FROM `+d.table+` WHERE id = ? AND version = ?`), id, version)
	if err != nil {
		return fmt.Errorf("store: delete %s %s: %w", d.what, id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return d.missOrConflict(ctx, id, false)
	}
	return nil
}
