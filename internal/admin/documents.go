package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/mcpsts/mcpsts/trustmaps"
)

// Documents is a kind of versioned document the admin API manages beside
// trust maps: trusted federation providers, registered clients. They are
// written with the same preconditions (If-None-Match: * to create, If-Match
// "<version>" to replace or delete) and checked before any write.
type Documents struct {
	Repo trustmaps.Repository
	// Check returns the problems of doc as document id, or of removing it
	// when doc is nil; none means the write may go ahead.
	Check func(ctx context.Context, id string, doc []byte) []string
	// Changed, when set, is called after a write: this replica puts it in
	// force at once (the others at their next reload).
	Changed func(ctx context.Context)
}

// documentAPI serves one kind at /admin/v1/{kind}: singular names it in
// messages and operations ("provider" → provider.put).
type documentAPI struct {
	a        *api
	docs     *Documents
	singular string
}

func (d documentAPI) mount(mux *http.ServeMux, kind string) {
	mux.HandleFunc("GET /admin/v1/"+kind, d.list)
	mux.HandleFunc("GET /admin/v1/"+kind+"/{id}", d.get)
	mux.HandleFunc("PUT /admin/v1/"+kind+"/{id}", d.put)
	mux.HandleFunc("DELETE /admin/v1/"+kind+"/{id}", d.delete)
}

func (d documentAPI) list(w http.ResponseWriter, r *http.Request) {
	recs, err := d.docs.Repo.Records(r.Context())
	if err != nil {
		d.a.internal(w, err)
		return
	}
	out := make([]mapView, len(recs))
	for i, rec := range recs {
		out[i] = view(rec)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": out})
}

func (d documentAPI) get(w http.ResponseWriter, r *http.Request) {
	rec, err := d.docs.Repo.Record(r.Context(), r.PathValue("id"))
	if d.failed(w, r.PathValue("id"), err, "") {
		return
	}
	w.Header().Set("ETag", etag(rec.Version))
	writeJSON(w, http.StatusOK, view(rec))
}

func (d documentAPI) put(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ver, err := version(r)
	if err != nil {
		d.a.fail(w, http.StatusPreconditionRequired, "precondition_required", err.Error())
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		d.a.fail(w, http.StatusRequestEntityTooLarge, "too_large", "the "+d.singular+" is larger than 1 MiB")
		return
	}
	if !json.Valid(body) {
		d.a.fail(w, http.StatusBadRequest, "invalid_"+d.singular, "the body is not a "+d.singular+" in JSON")
		return
	}
	if problems := d.docs.Check(r.Context(), id, body); problems != nil {
		d.a.fail(w, http.StatusBadRequest, "invalid_"+d.singular, "the "+d.singular+" is not valid", problems...)
		return
	}
	rec, err := d.docs.Repo.PutRecord(r.Context(), id, body, ver)
	if d.failed(w, id, err, "the "+d.singular+" changed since that version, or exists already") {
		return
	}
	d.changed(r.Context())
	w.Header().Set("ETag", etag(rec.Version))
	status := http.StatusOK
	if ver == 0 {
		status = http.StatusCreated
	}
	writeJSON(w, status, view(rec))
}

func (d documentAPI) delete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ver, err := version(r)
	if err != nil || ver == 0 {
		d.a.fail(w, http.StatusPreconditionRequired, "precondition_required", `send If-Match: "<version>" to delete`)
		return
	}
	if problems := d.docs.Check(r.Context(), id, nil); problems != nil {
		d.a.fail(w, http.StatusBadRequest, "invalid_"+d.singular, "the "+d.singular+" cannot be removed", problems...)
		return
	}
	if d.failed(w, id, d.docs.Repo.DeleteRecord(r.Context(), id, ver), "the "+d.singular+" changed since that version") {
		return
	}
	d.changed(r.Context())
	w.WriteHeader(http.StatusNoContent)
}

func (d documentAPI) changed(ctx context.Context) {
	if d.docs.Changed != nil {
		d.docs.Changed(ctx)
	}
}

// failed answers a repository error, if any, and reports whether it did.
func (d documentAPI) failed(w http.ResponseWriter, id string, err error, conflict string) bool {
	switch {
	case errors.Is(err, trustmaps.ErrConflict):
		d.a.fail(w, http.StatusPreconditionFailed, "version_conflict", conflict)
	case errors.Is(err, trustmaps.ErrNotFound):
		d.a.fail(w, http.StatusNotFound, "not_found", fmt.Sprintf("no %s %s", d.singular, strconv.Quote(id)))
	case err != nil:
		d.a.internal(w, err)
	default:
		return false
	}
	return true
}
