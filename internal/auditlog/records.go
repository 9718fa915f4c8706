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

// decisionLine is what a replay reads of a line: the replay documents as
// members of their own, or, in lines written before lines were lean,
// strings quoting them under mcpsts.-prefixed names.
type decisionLine struct {
	Event       string          `json:"event"`
	Time        time.Time       `json:"time"`
	TraceID     string          `json:"trace_id"`
	Identity    json.RawMessage `json:"replay.identity"`
	Request     json.RawMessage `json:"replay.request"`
	Outcome     json.RawMessage `json:"replay.outcome"`
	OldIdentity json.RawMessage `json:"mcpsts.replay.identity"`
	OldRequest  json.RawMessage `json:"mcpsts.replay.request"`
	OldOutcome  json.RawMessage `json:"mcpsts.replay.outcome"`
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
	if l.Identity == nil && l.Request == nil && l.Outcome == nil {
		l.Identity, l.Request, l.Outcome = l.OldIdentity, l.OldRequest, l.OldOutcome
	}
	if l.Identity == nil || l.Request == nil || l.Outcome == nil {
		return rec, true, nil // recorded without what a replay needs
	}
	for _, f := range []struct {
		raw json.RawMessage
		v   any
	}{{l.Identity, &rec.Identity}, {l.Request, &rec.Request}, {l.Outcome, &rec.Outcome}} {
		doc := []byte(f.raw)
		if len(doc) > 0 && doc[0] == '"' { // an older line: a string quoting the document
			var s string
			if err := json.Unmarshal(doc, &s); err != nil {
				return impact.Record{}, false, fmt.Errorf("audit log line %d: a replay field is not what mcpsts records", n)
			}
			doc = []byte(s)
		}
		if err := json.Unmarshal(doc, f.v); err != nil || len(doc) == 0 || doc[0] != '{' {
			return impact.Record{}, false, fmt.Errorf("audit log line %d: a replay field is not what mcpsts records", n)
		}
	}
	rec.Replayable = true
	return rec, true, nil
}
