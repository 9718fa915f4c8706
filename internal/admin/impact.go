package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/mcpsts/mcpsts/internal/auditlog"
	"github.com/mcpsts/mcpsts/trustmaps/impact"
)

// impactRequest proposes changes to the store's maps: each map ID with its
// new document, or null to remove it; since bounds the replayed window
// (a Go duration, default 168h; "0" for all the log holds).
type impactRequest struct {
	Maps  map[string]json.RawMessage `json:"maps"`
	Since string                     `json:"since"`
}

type impactResponse struct {
	Report *impact.Report `json:"report"`
	// Partial: the log was longer than the server reads; only its end was
	// replayed.
	Partial bool `json:"partial"`
}

// impact replays the server's own audit log against the maps as they
// would be with the proposed changes: POST /admin/v1/impact.
func (a *api) impact(w http.ResponseWriter, r *http.Request) {
	var req impactRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || len(req.Maps) == 0 {
		a.fail(w, http.StatusBadRequest, "invalid_request", "the body is not an impact request: {\"maps\": {\"<id>\": <map> or null, …}, \"since\": \"168h\"}")
		return
	}
	since := 168 * time.Hour
	if req.Since != "" {
		d, err := time.ParseDuration(req.Since)
		if err != nil || d < 0 {
			a.fail(w, http.StatusBadRequest, "invalid_request", "since: want a duration such as 168h, or 0 for all")
			return
		}
		since = d
	}
	changes := map[string][]byte{}
	for id, doc := range req.Maps {
		if string(doc) == "null" {
			changes[id] = nil
		} else {
			changes[id] = doc
		}
	}
	after, problems := a.with(r, changes)
	if problems != nil {
		a.fail(w, http.StatusBadRequest, "invalid_trust_map", "the trust maps would not compile with these changes", problems...)
		return
	}
	timeout := a.cfg.ImpactTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	src, partial, files, err := tailSet(a.cfg.AuditFile, a.cfg.ImpactMaxBytes)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if err != nil {
		a.internal(w, err)
		return
	}
	opt := impact.Options{}
	if since > 0 {
		opt.Since = a.cfg.Clock().Add(-since)
	}
	rep, err := impact.Replay(ctx, auditlog.Records(src), after, opt)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		a.fail(w, http.StatusServiceUnavailable, "temporarily_unavailable", fmt.Sprintf("the replay did not finish within %s: ask for a shorter window", timeout))
		return
	case err != nil:
		a.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, impactResponse{Report: rep, Partial: partial})
}

// tailSet reads the end of the audit log at path and of its rotated files,
// newest last: whole files while they fit in max bytes (on disk; 0: 256
// MiB), then the end of the next uncompressed one, from a line. partial
// reports whether it left something out.
// The files it opened are for the caller to close, on an error too.
func tailSet(path string, max int64) (r io.Reader, partial bool, opened []io.Closer, err error) {
	if max <= 0 {
		max = 256 << 20
	}
	files, err := auditlog.Files(path)
	if err != nil {
		return nil, false, nil, err
	}
	var readers []io.Reader
	for i := len(files) - 1; i >= 0; i-- {
		fi, err := os.Stat(files[i])
		if err != nil {
			return nil, false, opened, err
		}
		if fi.Size() <= max {
			rc, err := auditlog.OpenFile(files[i])
			if err != nil {
				return nil, false, opened, err
			}
			readers, opened = append([]io.Reader{rc}, readers...), append(opened, rc)
			max -= fi.Size()
			continue
		}
		partial = true
		if !strings.HasSuffix(files[i], ".gz") {
			f, err := os.Open(files[i])
			if err != nil {
				return nil, false, opened, err
			}
			opened = append(opened, f)
			t, _, err := tail(f, max)
			if err != nil {
				return nil, false, opened, err
			}
			readers = append([]io.Reader{t}, readers...)
		}
		break
	}
	return io.MultiReader(readers...), partial, opened, nil
}

// tail returns a reader of at most max bytes of f's end (0: 256 MiB),
// starting at a line, and whether it left the beginning out.
func tail(f *os.File, max int64) (io.Reader, bool, error) {
	if max <= 0 {
		max = 256 << 20
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	if fi.Size() <= max {
		return f, false, nil
	}
	if _, err := f.Seek(fi.Size()-max, io.SeekStart); err != nil {
		return nil, false, err
	}
	br := bufio.NewReaderSize(f, 64<<10)
	if _, err := br.ReadBytes('\n'); err != nil { // the line cut by the seek
		return nil, false, err
	}
	return br, true, nil
}
