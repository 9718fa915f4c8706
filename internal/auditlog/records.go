package auditlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"

	"github.com/mcpsts/mcpsts/trustmaps/impact"
)

// Records streams the token decisions of an audit log (token.allow and
// token.deny lines) as records for a replay (trustmaps/impact), in order,
// in memory bounded by one line. A line recorded without the replay fields
// yields a record that is not replayable; other events are skipped. A line
// that is not a JSON audit record, or a last line cut short, ends the
// stream with an error naming the line.
func Records(r io.Reader) iter.Seq2[impact.Record, error] {
	return func(yield func(impact.Record, error) bool) {
		br := bufio.NewReaderSize(r, 64<<10)
		for n := 1; ; n++ {
			line, err := br.ReadBytes('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				yield(impact.Record{}, fmt.Errorf("audit log line %d: %w", n, err))
				return
			}
			if len(line) == 0 && err != nil {
				return
			}
			if line[len(line)-1] != '\n' {
				yield(impact.Record{}, fmt.Errorf("audit log line %d: cut short (no end of line): a truncated log", n))
				return
			}
			rec, ok, perr := parseRecord(line, n)
			if perr != nil {
				yield(impact.Record{}, perr)
				return
			}
			if ok && !yield(rec, nil) {
				return
			}
		}
	}
}

type decisionLine struct {
	Event    string          `json:"event"`
	Time     time.Time       `json:"time"`
	TraceID  string          `json:"trace_id"`
	Identity json.RawMessage `json:"mcpsts.replay.identity"`
	Request  json.RawMessage `json:"mcpsts.replay.request"`
	Outcome  json.RawMessage `json:"mcpsts.replay.outcome"`
}

func parseRecord(line []byte, n int) (impact.Record, bool, error) {
	if len(bytes.TrimSpace(line)) == 0 {
		return impact.Record{}, false, nil
	}
	var l decisionLine
	if err := json.Unmarshal(line, &l); err != nil || l.Event == "" {
		return impact.Record{}, false, fmt.Errorf("audit log line %d: not a JSON audit record", n)
	}
	if l.Event != "token.allow" && l.Event != "token.deny" {
		return impact.Record{}, false, nil
	}
	rec := impact.Record{Line: n, TraceID: l.TraceID, Time: l.Time}
	if l.Identity == nil || l.Request == nil || l.Outcome == nil {
		return rec, true, nil // recorded without what a replay needs
	}
	// The replay fields are JSON documents in string members.
	for _, f := range []struct {
		raw json.RawMessage
		v   any
	}{{l.Identity, &rec.Identity}, {l.Request, &rec.Request}, {l.Outcome, &rec.Outcome}} {
		var s string
		if err := json.Unmarshal(f.raw, &s); err != nil || json.Unmarshal([]byte(s), f.v) != nil {
			return impact.Record{}, false, fmt.Errorf("audit log line %d: a replay field is not what mcpsts records", n)
		}
	}
	rec.Replayable = true
	return rec, true, nil
}
