// Package auditlog writes the audit log that sits beside the traces, for
// environments without a collector: one JSON line per decision and per
// administrative change, each line holding the SHA-256 of the line before
// it (prev) and of its own content (hash), so that an edited, deleted,
// inserted or reordered line breaks the chain and Verify names it.
//
// A line is a JSON object: event, time, seq, prev, the event's attributes,
// hash. Its hash is the SHA-256 of the line as written without its final
// `,"hash":"…"` member; prev is the hash of the line before (64 zeros for
// the first line of a file); seq counts from 1. Deleting lines at the end of the file cannot be told from a file
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
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// genesis is the prev of a file's first line.
var genesis = strings.Repeat("0", 64)

const hashMember = `,"hash":"`

// Log appends audit events to a file. It is safe for concurrent use.
// Append hands the event to a writer goroutine; the queue is bounded and a
// full queue makes Append wait rather than lose an event.
type Log struct {
	path    string
	opts    Options
	lockf   *os.File // path.lock: every writer of the log takes its lock
	gen     uint64   // the rotations of the file we hold, as the lock file counts them
	f       *os.File
	w       *bufio.Writer
	queue   chan record
	done    chan struct{} // closed by Close
	stopped chan struct{} // closed when the writer has drained the queue
	clock   func() time.Time
	bufs    sync.Pool // of *[]byte: records' encodings

	closing sync.RWMutex // Append holds it shared; Close exclusively
	closed  bool

	mu      sync.Mutex // guards what follows
	pending []record   // taken from the queue, not yet written
	prev    string     // hash of the last line in the file
	seq     int64
	size    int64     // the file's size after our last write
	born    time.Time // the time of the file's first line (zero: empty)

	retiring sync.WaitGroup // compressions and removals of rotated files
	retireMu sync.Mutex     // one at a time
	// err is the last write error while the log cannot be written, nil
	// while it can: the writer retries what is pending on every tick,
	// and Append refuses new events until a retry succeeds.
	err     error
	failed  atomic.Bool
	notify  func(err error) // told of each change of err between nil and not
	scratch []byte
}

// record is an event encoded when it was appended, while its attributes
// are still in the cache: the line without seq, prev and hash, which only
// the writer knows. (*buf)[:split] goes before them, the rest after.
type record struct {
	buf   *[]byte
	split int
}

// Event is one audit record: its attributes become the line's members
// beside event, time, seq, prev and hash.
type Event struct {
	Name  string // token.allow, token.deny, admin.trust_map.put, keys.rotate…
	Time  time.Time
	Attrs []attribute.KeyValue
}

// reserved are the members the log itself writes.
var reserved = map[string]bool{"event": true, "time": true, "seq": true, "prev": true, "hash": true}

// Options configure a Log.
type Options struct {
	Clock func() time.Time // nil: time.Now
	// MaxSize rotates the file before a write would take it past this many
	// bytes; MaxAge rotates it once its first line is this old (0: never).
	// The chain continues across files: a new file's first line is an
	// audit.rotated event naming the file before and holding its last hash.
	MaxSize int64
	MaxAge  time.Duration
	// MaxFiles is how many rotated files are kept (0: all); the oldest
	// beyond it are removed.
	MaxFiles int
	// Compress gzips rotated files (name.gz).
	Compress bool
	// Log reports rotations, removals and compression failures; nil: none.
	Log *slog.Logger
}

// Open opens (creating it 0600) the audit log at path and continues its
// chain: the last line must be intact, or Open refuses to append to a log
// that was tampered with. It never rotates.
func Open(path string, clock func() time.Time) (*Log, error) {
	return OpenWith(path, Options{Clock: clock})
}

// OpenWith is Open with rotation and the other options.
func OpenWith(path string, o Options) (*Log, error) {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	lf, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("auditlog: %w", err)
	}
	lock(lf)
	if fi, err := lf.Stat(); err == nil && fi.Size() < 8 {
		// The count of rotations, written in place from now on: a full
		// disk cannot make a rotation's count fail to land.
		if err := setGeneration(lf, 0); err != nil {
			unlock(lf)
			lf.Close()
			return nil, fmt.Errorf("auditlog: %s.lock: %w", path, err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		unlock(lf)
		lf.Close()
		return nil, fmt.Errorf("auditlog: %w", err)
	}
	l := &Log{path: path, opts: o, lockf: lf, gen: generation(lf), f: f, w: bufio.NewWriterSize(f, 64<<10),
		bufs:  sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }},
		queue: make(chan record, 16384), done: make(chan struct{}), stopped: make(chan struct{}), clock: o.Clock, size: -1}
	err = l.reload()
	unlock(lf)
	if err != nil {
		f.Close()
		lf.Close()
		return nil, fmt.Errorf("auditlog: %s: %w", path, err)
	}
	go l.run()
	return l, nil
}

// reload reads the chain's head from the file when another process (a
// command line tool) appended since our last write, and follows a rotation
// another writer made: the file at path is then another file. The lock is
// held.
func (l *Log) reload() error {
	if gen := generation(l.lockf); gen != l.gen {
		f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		l.f.Close()
		l.f, l.size, l.gen = f, -1, gen
		l.w.Reset(f)
	}
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
	l.born = time.Time{}
	if fi.Size() > 0 {
		if l.born, err = head(l.f); err != nil {
			return err
		}
	}
	l.prev, l.seq, l.size = prev, seq, fi.Size()
	return nil
}

// head reads the time of the first line of f.
func head(f *os.File) (time.Time, error) {
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, 1<<62), 4096)
	var h struct {
		Time time.Time `json:"time"`
	}
	dec := json.NewDecoder(r)
	if err := dec.Decode(&h); err != nil {
		return time.Time{}, fmt.Errorf("the first line is not an audit record: %w", err)
	}
	return h.Time, nil
}

// tail reads the hash and seq of the last line of f, however long it is:
// it reads back from the end until the newline before that line.
func tail(f *os.File) (prev string, seq int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	end := fi.Size()
	if end == 0 {
		return genesis, 0, nil
	}
	const chunk = 64 << 10
	var last []byte // the end of the file read so far, without its final newline
	for off := end; off > 0; {
		n := min(off, chunk)
		off -= n
		buf := make([]byte, n, n+int64(len(last)))
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return "", 0, err
		}
		last = append(buf, last...)
		if off+int64(len(last)) == end {
			last = bytes.TrimRight(last, "\n")
		}
		if i := bytes.LastIndexByte(last, '\n'); i >= 0 {
			last = last[i+1:]
			break
		}
	}
	_, hash, seq, err := check(last)
	if err != nil {
		return "", 0, fmt.Errorf("the last line is not intact (%v): verify the log and start a new file", err)
	}
	return hash, seq, nil
}

// Append queues e for writing; it is on disk within flushEvery. While the
// log cannot be written it returns why, and queues nothing: the writer
// keeps retrying what was queued before, and Append takes events again
// once that is written.
func (l *Log) Append(e Event) error {
	if e.Time.IsZero() {
		e.Time = l.clock()
	}
	return l.append(l.encode(e.Name, e.Time, trace.SpanContext{}, e.Attrs, false))
}

// Decision appends a decision (of the token endpoint): the trace and span
// IDs of sc and the mcpsts.* attributes of attrs. attrs is not kept.
func (l *Log) Decision(name string, at time.Time, sc trace.SpanContext, attrs []attribute.KeyValue) error {
	return l.append(l.encode(name, at, sc, attrs, true))
}

func (l *Log) append(r record) error {
	if l.failed.Load() {
		// The writer may have recovered since the flag was read: the
		// record is refused, and its buffer freed, only if it is still
		// failing (a buffer freed and then queued would be another
		// record's too, and break the chain).
		if err := l.Failing(); err != nil {
			l.bufs.Put(r.buf)
			return err
		}
	}
	l.closing.RLock()
	defer l.closing.RUnlock()
	if l.closed {
		l.bufs.Put(r.buf)
		return errors.New("auditlog: closed")
	}
	l.queue <- r // the writer drains the queue until Close, which waits for us
	return nil
}

// flushEvery is how long an event may wait in memory before it is written.
// The writer wakes on this tick, not on each event, and writes what came in
// one batch: no goroutine switch and no system call per request.
const flushEvery = 50 * time.Millisecond

func (l *Log) run() {
	defer close(l.stopped)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			l.drain()
		case <-l.done:
			l.drain()
			return
		}
	}
}

// drain writes every queued event.
func (l *Log) drain() {
	for {
		select {
		case r := <-l.queue:
			l.mu.Lock()
			l.pending = append(l.pending, r)
			n := len(l.pending)
			l.mu.Unlock()
			if n >= 4096 {
				l.flush()
			}
		default:
			l.flush()
			return
		}
	}
}

// encode writes an event as its line without seq, prev and hash: the
// members before them (event, time) and after them (the trace and span
// IDs of sc when it is valid, then the attributes: only the mcpsts.* ones
// when onlyOurs, else all but the reserved names). It writes JSON by hand,
// members in a fixed order: it runs for every decision.
//
// Lines are lean: an attribute's name goes without its mcpsts. prefix
// (subject.id, not mcpsts.subject.id), an empty string is left out, and a
// replay document (mcpsts.replay.*, JSON that the token endpoint wrote) is
// a JSON member of its own rather than a string that quotes it.
func (l *Log) encode(name string, t time.Time, sc trace.SpanContext, attrs []attribute.KeyValue, onlyOurs bool) record {
	buf := l.bufs.Get().(*[]byte)
	b := append((*buf)[:0], `{"event":`...)
	b = appendString(b, name)
	b = append(b, `,"time":"`...)
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	split := len(b)
	if sc.IsValid() {
		tid, sid := sc.TraceID(), sc.SpanID()
		b = append(b, `,"trace_id":"`...)
		b = hex.AppendEncode(b, tid[:])
		b = append(b, `","span_id":"`...)
		b = hex.AppendEncode(b, sid[:])
		b = append(b, '"')
	}
	for _, kv := range attrs {
		key, ours := strings.CutPrefix(string(kv.Key), "mcpsts.")
		if onlyOurs && !ours || reserved[key] || kv.Value.Type() == attribute.STRING && kv.Value.AsString() == "" {
			continue
		}
		b = append(b, ',')
		b = appendString(b, key)
		b = append(b, ':')
		// The token endpoint writes the replay documents as JSON objects
		// itself (trustmaps/impact AppendJSON): the line holds them as
		// members; anything else in those names stays a string.
		if v := kv.Value.AsString(); ours && strings.HasPrefix(key, "replay.") && kv.Value.Type() == attribute.STRING &&
			len(v) > 1 && v[0] == '{' && v[len(v)-1] == '}' {
			b = append(b, v...)
			continue
		}
		b = appendValue(b, kv.Value)
	}
	*buf = b
	return record{buf, split}
}

// line writes r as the line after the current head and advances it.
func (l *Log) line(r record) error {
	rec := *r.buf
	body := append(l.scratch[:0], rec[:r.split]...)
	body = append(body, `,"seq":`...)
	body = strconv.AppendInt(body, l.seq+1, 10)
	body = append(body, `,"prev":"`...)
	body = append(body, l.prev...)
	body = append(body, '"')
	body = append(body, rec[r.split:]...)
	body = append(body, '}')
	sum := sha256.Sum256(body)
	var hash [64]byte
	hex.Encode(hash[:], sum[:])
	line := append(body[:len(body)-1], hashMember...)
	line = append(append(line, hash[:]...), "\"}\n"...)
	l.scratch = line
	if _, err := l.w.Write(line); err != nil {
		return fmt.Errorf("auditlog: write: %w", err)
	}
	l.seq++
	l.prev = string(hash[:])
	return nil
}

// appendValue writes an attribute value as JSON.
func appendValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		return strconv.AppendBool(b, v.AsBool())
	case attribute.INT64:
		return strconv.AppendInt(b, v.AsInt64(), 10)
	case attribute.FLOAT64:
		f := v.AsFloat64()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return append(b, "null"...)
		}
		return strconv.AppendFloat(b, f, 'g', -1, 64)
	case attribute.STRING:
		return appendString(b, bounded(v.AsString()))
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE, attribute.STRINGSLICE:
		b = append(b, '[')
		switch v.Type() {
		case attribute.BOOLSLICE:
			for i, x := range v.AsBoolSlice() {
				b = appendSep(b, i)
				b = strconv.AppendBool(b, x)
			}
		case attribute.INT64SLICE:
			for i, x := range v.AsInt64Slice() {
				b = appendSep(b, i)
				b = strconv.AppendInt(b, x, 10)
			}
		case attribute.FLOAT64SLICE:
			for i, x := range v.AsFloat64Slice() {
				b = appendSep(b, i)
				b = appendValue(b, attribute.Float64Value(x))
			}
		default:
			for i, x := range v.AsStringSlice() {
				b = appendSep(b, i)
				b = appendString(b, bounded(x))
			}
		}
		return append(b, ']')
	}
	return appendString(b, v.Emit())
}

// maxValue bounds one string in a line, whoever set it, so that no value
// makes a line unbounded (the token endpoint bounds what comes from a
// request to far less).
const maxValue = 4 << 10

func bounded(s string) string {
	if len(s) <= maxValue {
		return s
	}
	return strings.ToValidUTF8(s[:maxValue], "\ufffd") + "…(truncated)"
}

func appendSep(b []byte, i int) []byte {
	if i > 0 {
		return append(b, ',')
	}
	return b
}

// appendString writes s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD. Runs of plain
// bytes are copied at once.
func appendString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
			i++
			start = i
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// flush writes the pending events under the file lock, after the lines
// any other process appended. When it cannot, it leaves the file as it
// was, keeps the events pending and marks the log failing; the writer's
// next tick tries again.
func (l *Log) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) == 0 {
		return
	}
	lock(l.lockf)
	err := l.writePending()
	unlock(l.lockf)
	if err != nil {
		l.setErr(err)
		return
	}
	for _, r := range l.pending {
		l.bufs.Put(r.buf)
	}
	clear(l.pending)
	l.pending = l.pending[:0]
	l.setErr(nil)
}

// writePending writes the pending lines and flushes them; on an error it
// takes back what it wrote. l.mu and the file lock are held.
func (l *Log) writePending() error {
	if err := l.reload(); err != nil {
		return fmt.Errorf("auditlog: %w", err)
	}
	if l.due() {
		if err := l.rotate(); err != nil {
			return fmt.Errorf("auditlog: rotate: %w", err)
		}
	}
	if l.born.IsZero() && len(l.pending) > 0 {
		l.born = l.clock()
	}
	seq, prev, size := l.seq, l.prev, l.size
	var err error
	for _, r := range l.pending {
		if err = l.line(r); err != nil {
			break
		}
	}
	if err == nil {
		if err = l.w.Flush(); err == nil {
			if fi, serr := l.f.Stat(); serr == nil {
				l.size = fi.Size()
			}
			return nil
		}
		err = fmt.Errorf("auditlog: write: %w", err)
	}
	// A line written in part would break the chain: cut the file back
	// to its last whole line (shrinking needs no space), and forget the
	// head we advanced to.
	l.seq, l.prev = seq, prev
	l.w.Reset(l.f)
	if terr := l.f.Truncate(size); terr != nil {
		l.size = -1 // read the head again before the next write
		err = errors.Join(err, fmt.Errorf("auditlog: cut back a partial write: %w", terr))
	}
	return err
}

// setErr records whether the log can be written; l.mu is held.
func (l *Log) setErr(err error) {
	was := l.err
	l.err = err
	l.failed.Store(err != nil)
	if (was == nil) != (err == nil) && l.notify != nil {
		l.notify(err)
	}
}

// Flush writes what was appended so far, now, rather than at the writer's
// next tick.
func (l *Log) Flush() { l.drain() }

// Failing returns why the log cannot be written now, or nil.
func (l *Log) Failing() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Notify calls f, from the writer, each time the log starts failing (with
// the error) and each time it recovers (with nil).
func (l *Log) Notify(f func(err error)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.notify = f
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
	l.retiring.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.err, l.f.Sync(), l.f.Close(), l.lockf.Close())
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

// BreakError names the first line where the chain breaks, and its file
// when a rotated set is verified.
type BreakError struct {
	File   string // "" for one file
	Line   int    // 1-based; 0 for the file as a whole
	Reason string
}

func (e *BreakError) Error() string {
	where := fmt.Sprintf("line %d", e.Line)
	switch {
	case e.File != "" && e.Line == 0:
		where = e.File
	case e.File != "":
		where = e.File + ": " + where
	}
	return where + ": " + e.Reason
}

// stream is what verifying the lines of one file found.
type stream struct {
	lines            int
	firstPrev        string
	firstSeq         int64
	continues        string // previous_file of a first line audit.rotated
	lastHash         string
	lastSeq          int64
	firstLineRotated bool
}

// verifyStream checks that every line of r is intact and follows the one
// before it; the first line's own place in the chain is for the caller.
func verifyStream(r io.Reader) (stream, error) {
	var st stream
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, rerr := br.ReadBytes('\n') // any length, as Open reads the last line
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return st, fmt.Errorf("auditlog: read: %w", rerr)
		}
		if len(line) == 0 && rerr != nil {
			break
		}
		st.lines++
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		p, h, s, err := check(line)
		switch {
		case err != nil:
			return st, &BreakError{Line: st.lines, Reason: err.Error()}
		case st.lines == 1:
			st.firstPrev, st.firstSeq = p, s
			var first struct {
				Event        string `json:"event"`
				PreviousFile string `json:"previous_file"`
			}
			json.Unmarshal(line, &first)
			if first.Event == EventRotated && first.PreviousFile != "" {
				st.firstLineRotated, st.continues = true, first.PreviousFile
			}
		case p != st.lastHash:
			return st, &BreakError{Line: st.lines, Reason: fmt.Sprintf("prev does not match the hash of line %d: a line before it was deleted, inserted or moved", st.lines-1)}
		case s != st.lastSeq+1:
			return st, &BreakError{Line: st.lines, Reason: fmt.Sprintf("seq %d follows seq %d", s, st.lastSeq)}
		}
		st.lastHash, st.lastSeq = h, s
		if rerr != nil {
			break
		}
	}
	return st, nil
}

// Start is where a verified chain must begin: the zero Start is the
// genesis (seq 1, after the genesis hash). A log whose older files were
// removed (max_files) begins later: Seq is its first line's seq, and Prev,
// when known (kept elsewhere), the hash of the line before it.
type Start struct {
	Seq  int64
	Prev string
}

// begins checks the first line of what was verified against start.
func (start Start) begins(st stream) string {
	switch {
	case start.Seq == 0 && st.firstPrev == genesis && st.firstSeq == 1:
		return ""
	case start.Seq == 0 && st.firstLineRotated:
		return fmt.Sprintf("the chain starts at seq %d, continuing %s, which is no longer here: lines before it were removed (if max_files removed them, say where the kept log begins: --from-seq %d, and --expect-hash with the hash of line %d if you kept it)",
			st.firstSeq, st.continues, st.firstSeq, st.firstSeq-1)
	case start.Seq == 0 && st.firstPrev != genesis:
		return "the first line does not start the chain: lines before it were deleted"
	case start.Seq == 0:
		return fmt.Sprintf("seq %d follows seq 0", st.firstSeq)
	case st.firstSeq != start.Seq:
		return fmt.Sprintf("the chain starts at seq %d, not %d", st.firstSeq, start.Seq)
	case start.Prev != "" && st.firstPrev != start.Prev:
		return fmt.Sprintf("the chain's first line does not follow the hash expected before seq %d: it was replaced", start.Seq)
	}
	return ""
}

// Verify checks the chain of the log read from r and returns how many
// lines it holds and the last hash, or a *BreakError naming the first
// broken line. Its first line must start the chain (start), as the
// genesis or where a removed older file ended.
func Verify(r io.Reader, start Start) (lines int, last string, err error) {
	st, err := verifyStream(r)
	if err != nil {
		return st.lines, "", err
	}
	if st.lines > 0 {
		if reason := start.begins(st); reason != "" {
			return 1, "", &BreakError{Line: 1, Reason: reason}
		}
	}
	return st.lines, st.lastHash, nil
}

// FileReport is one file of a verified set.
type FileReport struct {
	Name             string
	Lines            int
	FirstSeq, Seq    int64  // the first and last seq (0, 0 for an empty file)
	ContinuesMissing string // of the oldest file: the file its first line continues, no longer present
}

// VerifySet checks the log at path with its rotated files: each file's
// chain, and that each file's first line continues the last line of the
// file before it, so that a missing, reordered or edited file is named.
// Its oldest file must start the chain (start): the genesis, or where the
// files max_files removed ended, as the caller says; its report names the
// file it continues. It returns the last hash.
func VerifySet(path string, start Start) (files []FileReport, last string, err error) {
	names, err := Files(path)
	if err != nil {
		return nil, "", err
	}
	if len(names) == 0 {
		return nil, "", fmt.Errorf("auditlog: %s: %w", path, os.ErrNotExist)
	}
	present := map[string]bool{}
	for _, n := range names {
		present[strings.TrimSuffix(filepath.Base(n), ".gz")] = true
	}
	var prevHash, prevName string
	var prevSeq int64
	for i, name := range names {
		base := filepath.Base(name)
		rc, err := OpenFile(name)
		if err != nil {
			return files, "", err
		}
		st, err := verifyStream(rc)
		rc.Close()
		if be := (*BreakError)(nil); errors.As(err, &be) {
			be.File = base
			return files, "", be
		}
		if err != nil {
			return files, "", fmt.Errorf("%s: %w", base, err)
		}
		rep := FileReport{Name: base, Lines: st.lines, FirstSeq: st.firstSeq, Seq: st.lastSeq}
		switch {
		case st.lines == 0 && i < len(names)-1:
			return files, "", &BreakError{File: base, Reason: "a rotated file is empty"}
		case st.lines == 0:
		case i == 0 && st.firstLineRotated && present[st.continues]:
			return files, "", &BreakError{File: base, Line: 1, Reason: fmt.Sprintf("continues %s, which is not before it", st.continues)}
		case i == 0 && start.begins(st) != "":
			return files, "", &BreakError{File: base, Line: 1, Reason: start.begins(st)}
		case i == 0 && st.firstLineRotated:
			rep.ContinuesMissing = st.continues
		case i > 0 && !st.firstLineRotated:
			return files, "", &BreakError{File: base, Line: 1, Reason: fmt.Sprintf("starts a new chain: it does not continue %s", prevName)}
		case i > 0 && st.continues != strings.TrimSuffix(prevName, ".gz") && !present[st.continues]:
			return files, "", &BreakError{File: base, Line: 1, Reason: fmt.Sprintf("continues %s, which is missing", st.continues)}
		case i > 0 && st.continues != strings.TrimSuffix(prevName, ".gz"):
			return files, "", &BreakError{File: base, Line: 1, Reason: fmt.Sprintf("continues %s, not %s: the files are out of order", st.continues, prevName)}
		case i > 0 && (st.firstPrev != prevHash || st.firstSeq != prevSeq+1):
			return files, "", &BreakError{File: base, Line: 1, Reason: fmt.Sprintf("does not continue the last line of %s: lines were removed from its end, or it was replaced", prevName)}
		}
		files = append(files, rep)
		if st.lines > 0 {
			prevHash, prevSeq = st.lastHash, st.lastSeq
		}
		prevName = base
	}
	return files, prevHash, nil
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
	p.l.append(p.l.encode(name, s.EndTime(), s.SpanContext(), s.Attributes(), true))
}

func (p processor) Shutdown(context.Context) error   { return nil }
func (p processor) ForceFlush(context.Context) error { return nil }

// Instrument reports the log's state changes: an error line when it starts
// failing (token requests are then refused) and an info line when it can
// be written again; the gauge mcpsts.audit.failing (1 while it cannot be
// written) and the counter mcpsts.audit.transitions{state=failing|recovered}.
func (l *Log) Instrument(log *slog.Logger, m metric.Meter) error {
	transitions, err := m.Int64Counter("mcpsts.audit.transitions", metric.WithDescription("changes of the audit log between writable and failing"))
	if err != nil {
		return err
	}
	failing := metric.WithAttributeSet(attribute.NewSet(attribute.String("state", "failing")))
	recovered := metric.WithAttributeSet(attribute.NewSet(attribute.String("state", "recovered")))
	if _, err := m.Int64ObservableGauge("mcpsts.audit.failing", metric.WithDescription("1 while the audit log cannot be written (token requests are refused), else 0"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			var v int64
			if l.failed.Load() {
				v = 1
			}
			o.Observe(v)
			return nil
		})); err != nil {
		return err
	}
	l.Notify(func(err error) {
		if err != nil {
			log.Error("audit log cannot be written: token requests are refused until it can; retrying", "file", l.f.Name(), "error", err)
			transitions.Add(context.Background(), 1, failing)
			return
		}
		log.Info("audit log can be written again: token requests are served", "file", l.f.Name())
		transitions.Add(context.Background(), 1, recovered)
	})
	return nil
}
