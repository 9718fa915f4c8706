// Package auditlog writes the audit log that sits beside the traces, for
// environments without a collector: one JSON line per decision and per
// administrative change, each line holding the SHA-256 of the line before
// it (prev) and of its own content (hash), so that an edited, deleted,
// inserted or reordered line breaks the chain and Verify names it.
//
// A line is a JSON object with sorted keys; its hash is the SHA-256 of the
// line as written without its final `,"hash":"…"` member; prev is the hash
// of the line before (64 zeros for the first line of a file); seq counts
// from 1. Deleting lines at the end of the file cannot be told from a file
// that ends there: keep the last hash Verify prints somewhere else.
package auditlog

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// genesis is the prev of a file's first line.
var genesis = strings.Repeat("0", 64)

const hashMember = `,"hash":"`

// Log appends audit events to a file. It is safe for concurrent use.
// Append hands the event to a writer goroutine; the queue is bounded and a
// full queue makes Append wait rather than lose an event.
type Log struct {
	f       *os.File
	w       *bufio.Writer
	queue   chan Event
	done    chan struct{} // closed by Close
	stopped chan struct{} // closed when the writer has drained the queue
	clock   func() time.Time

	closing sync.RWMutex // Append holds it shared; Close exclusively
	closed  bool

	mu      sync.Mutex // guards what follows
	pending []Event    // taken from the queue, not yet written
	prev    string     // hash of the last line in the file
	seq     int64
	size    int64 // the file's size after our last write
	err     error // the first write error; later events are not written
}

// Event is one audit record: its fields, which become the line's members
// beside event, time, seq, prev and hash.
type Event struct {
	Name   string // token.allow, token.deny, admin.trust_map.put, keys.rotate…
	Time   time.Time
	Fields map[string]any
}

// reserved are the members the log itself writes.
var reserved = map[string]bool{"event": true, "time": true, "seq": true, "prev": true, "hash": true}

// Open opens (creating it 0600) the audit log at path and continues its
// chain: the last line must be intact, or Open refuses to append to a log
// that was tampered with.
func Open(path string, clock func() time.Time) (*Log, error) {
	if clock == nil {
		clock = time.Now
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("auditlog: %w", err)
	}
	l := &Log{f: f, w: bufio.NewWriterSize(f, 64<<10), queue: make(chan Event, 4096), done: make(chan struct{}), stopped: make(chan struct{}), clock: clock, size: -1}
	lock(f)
	err = l.reload()
	unlock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("auditlog: %s: %w", path, err)
	}
	go l.run()
	return l, nil
}

// reload reads the chain's head from the file when another process (a
// command line tool) appended since our last write. The file is locked.
func (l *Log) reload() error {
	fi, err := l.f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == l.size {
		return nil
	}
	prev, seq, err := tail(l.f)
	if err != nil {
		return err
	}
	l.prev, l.seq, l.size = prev, seq, fi.Size()
	return nil
}

// tail reads the hash and seq of the last line of f.
func tail(f *os.File) (prev string, seq int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	if fi.Size() == 0 {
		return genesis, 0, nil
	}
	const window = 64 << 10
	off := max(fi.Size()-window, 0)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return "", 0, err
	}
	buf = bytes.TrimRight(buf, "\n")
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		buf = buf[i+1:]
	} else if off > 0 {
		return "", 0, errors.New("the last line is longer than 64 KiB")
	}
	_, hash, seq, err := check(buf)
	if err != nil {
		return "", 0, fmt.Errorf("the last line is not intact (%v): verify the log and start a new file", err)
	}
	return hash, seq, nil
}

// Append queues e for writing. It returns the log's first write error, if
// any: from then on nothing more is written.
func (l *Log) Append(e Event) error {
	l.mu.Lock()
	err := l.err
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if e.Time.IsZero() {
		e.Time = l.clock()
	}
	l.closing.RLock()
	defer l.closing.RUnlock()
	if l.closed {
		return errors.New("auditlog: closed")
	}
	l.queue <- e // the writer drains the queue until Close, which waits for us
	return nil
}

func (l *Log) run() {
	defer close(l.stopped)
	for {
		select {
		case e := <-l.queue:
			l.write(e)
		case <-l.done:
			for {
				select {
				case e := <-l.queue:
					l.write(e)
				default:
					l.flush()
					return
				}
			}
		}
		if len(l.queue) == 0 || len(l.pending) >= 1024 {
			l.flush()
		}
	}
}

func (l *Log) write(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = append(l.pending, e)
}

// line encodes e as the line after the current head and advances it.
func (l *Log) line(e Event) error {
	m := make(map[string]any, len(e.Fields)+4)
	for k, v := range e.Fields {
		if !reserved[k] {
			m[k] = v
		}
	}
	m["event"], m["time"], m["seq"], m["prev"] = e.Name, e.Time.UTC().Format(time.RFC3339Nano), l.seq+1, l.prev
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("auditlog: event %s: %w", e.Name, err)
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	line := append(body[:len(body)-1:len(body)-1], hashMember...)
	line = append(append(line, hash...), "\"}\n"...)
	if _, err := l.w.Write(line); err != nil {
		return fmt.Errorf("auditlog: write: %w", err)
	}
	l.seq++
	l.prev = hash
	return nil
}

// flush writes the pending events under the file lock, after the lines
// any other process appended.
func (l *Log) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil || len(l.pending) == 0 {
		return
	}
	lock(l.f)
	defer unlock(l.f)
	if err := l.reload(); err != nil {
		l.err = fmt.Errorf("auditlog: %w", err)
		return
	}
	for _, e := range l.pending {
		if err := l.line(e); err != nil {
			l.err = err
			return
		}
	}
	l.pending = l.pending[:0]
	if err := l.w.Flush(); err != nil {
		l.err = fmt.Errorf("auditlog: write: %w", err)
		return
	}
	if fi, err := l.f.Stat(); err == nil {
		l.size = fi.Size()
	}
}

// Last returns the seq and hash of the last line written.
func (l *Log) Last() (int64, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, l.prev
}

// Close writes what is queued, syncs and closes the file. Appends after
// Close fail.
func (l *Log) Close() error {
	l.closing.Lock()
	if l.closed {
		l.closing.Unlock()
		return nil
	}
	l.closed = true
	l.closing.Unlock()
	close(l.done)
	<-l.stopped // it flushed
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.err, l.f.Sync(), l.f.Close())
}

// check verifies one line's own hash and returns its prev, hash and seq.
func check(line []byte) (prev, hash string, seq int64, err error) {
	i := bytes.LastIndex(line, []byte(hashMember))
	if i < 0 || len(line) != i+len(hashMember)+64+2 || !bytes.HasSuffix(line, []byte(`"}`)) {
		return "", "", 0, errors.New("no hash member at its end")
	}
	hash = string(line[i+len(hashMember) : i+len(hashMember)+64])
	body := append(line[:i:i], '}')
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != hash {
		return "", "", 0, errors.New("its hash does not match its content: the line was edited")
	}
	var head struct {
		Prev string `json:"prev"`
		Seq  int64  `json:"seq"`
	}
	if err := json.Unmarshal(body, &head); err != nil || len(head.Prev) != 64 || head.Seq < 1 {
		return "", "", 0, errors.New("no valid prev and seq")
	}
	return head.Prev, hash, head.Seq, nil
}

// BreakError names the first line where the chain breaks.
type BreakError struct {
	Line   int // 1-based
	Reason string
}

func (e *BreakError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// Verify checks the chain of the log read from r and returns how many
// lines it holds and the last hash, or a *BreakError naming the first
// broken line.
func Verify(r io.Reader) (lines int, last string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prev, seq := genesis, int64(0)
	for sc.Scan() {
		lines++
		p, h, s, err := check(sc.Bytes())
		switch {
		case err != nil:
			return lines, "", &BreakError{lines, err.Error()}
		case p != prev && lines == 1:
			return lines, "", &BreakError{lines, "the first line does not start the chain: lines before it were deleted"}
		case p != prev:
			return lines, "", &BreakError{lines, fmt.Sprintf("prev does not match the hash of line %d: a line before it was deleted, inserted or moved", lines-1)}
		case s != seq+1:
			return lines, "", &BreakError{lines, fmt.Sprintf("seq %d follows seq %d", s, seq)}
		}
		prev, seq = h, s
	}
	if err := sc.Err(); err != nil {
		return lines, "", fmt.Errorf("auditlog: read: %w", err)
	}
	return lines, prev, nil
}

// Processor returns a span processor that appends the spans that are audit
// events: event names them (and says which ones are), fields are every
// mcpsts.* attribute, with the trace and span IDs.
func (l *Log) Processor(event func(sdktrace.ReadOnlySpan) (string, bool)) sdktrace.SpanProcessor {
	return processor{l, event}
}

type processor struct {
	l     *Log
	event func(sdktrace.ReadOnlySpan) (string, bool)
}

func (p processor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (p processor) OnEnd(s sdktrace.ReadOnlySpan) {
	name, ok := p.event(s)
	if !ok {
		return
	}
	f := map[string]any{"trace_id": s.SpanContext().TraceID().String(), "span_id": s.SpanContext().SpanID().String()}
	for _, kv := range s.Attributes() {
		if k := string(kv.Key); strings.HasPrefix(k, "mcpsts.") {
			f[k] = kv.Value.AsInterface()
		}
	}
	p.l.Append(Event{Name: name, Time: s.EndTime(), Fields: f})
}

func (p processor) Shutdown(context.Context) error   { return nil }
func (p processor) ForceFlush(context.Context) error { return nil }
