package server

import (
	"log/slog"

	"github.com/mcpsts/mcpsts/trustmaps"
)

// reconciler puts the documents of a store repository (providers, posture
// sources) in force beside the configuration file's: a new or changed
// record is built and started, the one it replaces stopped, a removed one
// stopped. A record that does not build is logged and left out; the
// others stay.
type reconciler[T any] struct {
	what    string // in log lines: "federation provider"
	version func(T) int64
	// start builds and starts a record; put (optional) puts it in force
	// once the one it replaces is stopped.
	start func(rec trustmaps.Record) (T, error)
	put   func(T)
	stop  func(T)
	log   *slog.Logger
}

// apply brings running to recs and reports whether anything changed.
func (r reconciler[T]) apply(recs []trustmaps.Record, running map[string]T) (changed bool) {
	seen := map[string]bool{}
	for _, rec := range recs {
		seen[rec.ID] = true
		if cur, ok := running[rec.ID]; ok && r.version(cur) == rec.Version {
			continue
		}
		next, err := r.start(rec)
		if err != nil {
			r.log.Error(r.what+" from the store not put in force", "id", rec.ID, "version", rec.Version, "error", err)
			continue
		}
		if cur, ok := running[rec.ID]; ok {
			r.stop(cur)
		}
		if r.put != nil {
			r.put(next)
		}
		running[rec.ID] = next
		r.log.Info(r.what+" from the store in force", "id", rec.ID, "version", rec.Version)
		changed = true
	}
	for id, cur := range running {
		if !seen[id] {
			r.stop(cur)
			delete(running, id)
			r.log.Info(r.what+" removed from the store: no longer in force", "id", id)
			changed = true
		}
	}
	return changed
}
