package auditlog

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// A rotated file is named path.<UTC time of the rotation>, so that the
// names sort in the chain's order: audit.log.20261207T091500.123456789Z,
// with .gz when compressed.
const rotatedTime = "20060102T150405.000000000Z"

var rotatedSuffix = regexp.MustCompile(`^\.\d{8}T\d{6}\.\d{9}Z(\.gz)?$`)

// EventRotated is the first line of a file that continues the chain of the
// file before it: its prev is that file's last hash, its seq follows, and
// it names the file (previous_file).
const EventRotated = "audit.rotated"

// pendingBytes estimates what the pending lines take in the file.
func (l *Log) pendingBytes() int64 {
	var n int64
	for _, r := range l.pending {
		n += int64(len(*r.buf)) + 160 // seq, prev and hash
	}
	return n
}

// due reports whether the file must be rotated before the pending lines
// are written. An empty file never is.
func (l *Log) due() bool {
	if l.size <= 0 {
		return false
	}
	if l.opts.MaxSize > 0 && l.size+l.pendingBytes() > l.opts.MaxSize {
		return true
	}
	return l.opts.MaxAge > 0 && !l.born.IsZero() && l.clock().Sub(l.born) >= l.opts.MaxAge
}

// rotate moves the file aside as path.<time> and puts at path a new file
// whose first line, audit.rotated, names it and continues its chain. The
// new file is written in full before either rename, both under the lock
// every writer takes, so that no writer ever sees path missing or empty.
// l.mu and the lock are held, and l.w is flushed.
func (l *Log) rotate() error {
	now := l.clock().UTC()
	name := l.path + "." + now.Format(rotatedTime)
	for exists(name) || exists(name+".gz") {
		now = now.Add(time.Nanosecond)
		name = l.path + "." + now.Format(rotatedTime)
	}
	next := l.path + ".next"
	os.Remove(next) // what a rotation that failed left
	nf, err := os.OpenFile(next, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	seq, prev := l.seq, l.prev
	r := l.encode(EventRotated, now, trace.SpanContext{}, []attribute.KeyValue{
		attribute.String("previous_file", filepath.Base(name)), attribute.Int64("previous_seq", seq)}, false)
	defer l.bufs.Put(r.buf)
	l.w.Reset(nf)
	err = l.line(r)
	if err == nil {
		err = l.w.Flush()
	}
	if err == nil {
		err = nf.Sync()
	}
	if err == nil {
		// The other writers will see a new file by the count in the lock
		// file (counted first: a count with no rotation only makes them
		// open the same file again).
		err = setGeneration(l.lockf, l.gen+1)
	}
	if err == nil {
		l.gen++
		if err = os.Rename(l.path, name); err == nil {
			if err = os.Rename(next, l.path); err != nil {
				os.Rename(name, l.path) // put it back
			}
		}
	}
	if err != nil {
		l.seq, l.prev = seq, prev
		l.w.Reset(l.f)
		nf.Close()
		os.Remove(next)
		return err
	}
	fi, err := nf.Stat()
	if err != nil {
		fi = nil
	}
	l.f.Close()
	l.f, l.born, l.size = nf, now, -1
	if fi != nil {
		l.size = fi.Size()
	}
	l.opts.Log.Info("audit log rotated", "file", l.path, "rotated", name, "seq", l.seq)
	l.retiring.Add(1)
	go l.retire(name)
	return nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// retire compresses a rotated file when asked to, and removes the oldest
// rotated files beyond MaxFiles. Only one runs at a time in a process;
// files another process removed first are not an error.
func (l *Log) retire(name string) {
	defer l.retiring.Done()
	l.retireMu.Lock()
	defer l.retireMu.Unlock()
	if l.opts.Compress {
		if err := compress(name); err != nil {
			l.opts.Log.Warn("audit log: a rotated file was not compressed", "file", name, "error", err)
		}
	}
	if l.opts.MaxFiles <= 0 {
		return
	}
	removed := false
	rotated, err := rotatedFiles(l.path)
	if err != nil {
		l.opts.Log.Warn("audit log: rotated files not listed", "error", err)
		return
	}
	for len(rotated) > l.opts.MaxFiles {
		for _, f := range []string{rotated[0], strings.TrimSuffix(rotated[0], ".gz"), strings.TrimSuffix(rotated[0], ".gz") + ".gz"} {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				l.opts.Log.Warn("audit log: a rotated file beyond max_files was not removed", "file", f, "error", err)
			}
		}
		l.opts.Log.Info("audit log: removed a rotated file beyond max_files", "file", rotated[0])
		rotated = rotated[1:]
		removed = true
	}
	if !removed || len(rotated) == 0 {
		return
	}
	// Where the kept log begins now, for audit verify: a file removed
	// beyond these is then found.
	start, err := firstLine(rotated[0])
	if err == nil {
		err = setRetained(l.lockf, start)
	}
	if err != nil {
		l.opts.Log.Warn("audit log: where the kept log begins was not recorded", "file", rotated[0], "error", err)
	}
}

// firstLine reads where the file name begins: its first line's seq and
// the hash before it.
func firstLine(name string) (Start, error) {
	rc, err := OpenFile(name)
	if err != nil {
		return Start{}, err
	}
	defer rc.Close()
	line, err := bufio.NewReaderSize(rc, 64<<10).ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return Start{}, err
	}
	var first struct {
		Seq  int64  `json:"seq"`
		Prev string `json:"prev"`
	}
	if err := json.Unmarshal(line, &first); err != nil || first.Seq < 1 || len(first.Prev) > 255 {
		return Start{}, fmt.Errorf("%s: its first line names no seq and prev", filepath.Base(name))
	}
	return Start{Seq: first.Seq, Prev: first.Prev}, nil
}

// The lock file keeps, after the rotation count, where the kept log begins
// once max_files removed older files: the oldest kept file's first seq
// (8 bytes) and the hash before it (a length byte, the hash). It only
// moves forward.
const retainedAt = 8

func setRetained(lockf *os.File, s Start) error {
	if old, ok := retainedIn(lockf); ok && old.Seq >= s.Seq {
		return nil
	}
	b := make([]byte, 9+len(s.Prev))
	binary.LittleEndian.PutUint64(b, uint64(s.Seq))
	b[8] = byte(len(s.Prev))
	copy(b[9:], s.Prev)
	_, err := lockf.WriteAt(b, retainedAt)
	return err
}

func retainedIn(r io.ReaderAt) (Start, bool) {
	var b [9 + 255]byte
	n, _ := r.ReadAt(b[:], retainedAt)
	if n < 9 {
		return Start{}, false
	}
	seq, size := int64(binary.LittleEndian.Uint64(b[:8])), int(b[8])
	if seq < 1 || n < 9+size {
		return Start{}, false
	}
	return Start{Seq: seq, Prev: string(b[9 : 9+size])}, true
}

// Retained reads where the kept log at path begins, as its lock file
// records it: ok is false while max_files has removed no file (the log
// then begins at the genesis).
func Retained(path string) (start Start, ok bool, err error) {
	f, err := os.Open(path + ".lock")
	if errors.Is(err, os.ErrNotExist) {
		return Start{}, false, nil
	}
	if err != nil {
		return Start{}, false, err
	}
	defer f.Close()
	start, ok = retainedIn(f)
	return start, ok, nil
}

// compress writes name.gz beside name and removes name.
func compress(name string) error {
	in, err := os.Open(name)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := name + ".gz.tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out)
	_, err = io.Copy(zw, in)
	err = errors.Join(err, zw.Close(), out.Sync(), out.Close())
	if err == nil {
		err = os.Rename(tmp, name+".gz")
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Remove(name)
}

// rotatedFiles lists the rotated files of the log at path, oldest first,
// one name per rotation: the plain file while both it and its .gz exist
// (its compression did not finish).
func rotatedFiles(path string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	base := filepath.Base(path)
	seen := map[string]bool{}
	var out []string
	for _, e := range entries {
		suffix, ok := strings.CutPrefix(e.Name(), base)
		if !ok || !rotatedSuffix.MatchString(suffix) {
			continue
		}
		plain := strings.TrimSuffix(e.Name(), ".gz")
		if seen[plain] {
			continue
		}
		seen[plain] = true
		name := plain
		if !exists(filepath.Join(filepath.Dir(path), plain)) {
			name = plain + ".gz"
		}
		out = append(out, filepath.Join(filepath.Dir(path), name))
	}
	slices.SortFunc(out, func(a, b string) int {
		return strings.Compare(strings.TrimSuffix(a, ".gz"), strings.TrimSuffix(b, ".gz"))
	})
	return out, nil
}

// Files lists the files of the log at path in the chain's order: its
// rotated files, oldest first, then path itself.
func Files(path string) ([]string, error) {
	rotated, err := rotatedFiles(path)
	if err != nil {
		return nil, err
	}
	if !exists(path) {
		return rotated, nil
	}
	return append(rotated, path), nil
}

// OpenFile opens one file of a log, decompressing a .gz.
func OpenFile(name string) (io.ReadCloser, error) {
	f, err := os.Open(name)
	if err != nil || !strings.HasSuffix(name, ".gz") {
		return f, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, f}, nil
}

// OpenSet reads the log at path with its rotated files, in order, as one
// stream of lines.
func OpenSet(path string) (io.ReadCloser, error) {
	files, err := Files(path)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("auditlog: %s: %w", path, os.ErrNotExist)
	}
	var readers []io.Reader
	var closers []io.Closer
	for _, name := range files {
		rc, err := OpenFile(name)
		if err != nil {
			for _, c := range closers {
				c.Close()
			}
			return nil, err
		}
		readers, closers = append(readers, rc), append(closers, rc)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(readers...), closeAll(closers)}, nil
}

type closeAll []io.Closer

func (c closeAll) Close() error {
	var errs []error
	for _, x := range c {
		errs = append(errs, x.Close())
	}
	return errors.Join(errs...)
}

// generation reads the count of rotations the lock file keeps: a writer
// whose count differs holds a file that was rotated away, and opens path
// again. (A read of an open file, not a stat of path, on every write.)
func generation(lockf *os.File) uint64 {
	var b [8]byte
	if n, _ := lockf.ReadAt(b[:], 0); n < 8 {
		return 0
	}
	return binary.LittleEndian.Uint64(b[:])
}

func setGeneration(lockf *os.File, gen uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], gen)
	_, err := lockf.WriteAt(b[:], 0)
	return err
}
