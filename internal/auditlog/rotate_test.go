package auditlog_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/internal/auditlog"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// appendFlushed appends n events, flushing every batch events.
func appendFlushed(t *testing.T, l *auditlog.Log, prefix string, n, batch int) {
	t.Helper()
	for i := range n {
		if err := l.Append(event(fmt.Sprintf("%s-%d", prefix, i))); err != nil {
			t.Fatal(err)
		}
		if (i+1)%batch == 0 {
			l.Flush()
		}
	}
	l.Flush()
}

// linesOf counts the lines of the set and the events among them that are
// not rotations.
func linesOf(t *testing.T, path string) (all, events int) {
	t.Helper()
	rc, err := auditlog.OpenSet(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		all++
		if !strings.Contains(line, `"event":"audit.rotated"`) {
			events++
		}
	}
	return all, events
}

func TestRotateBySize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := auditlog.OpenWith(path, auditlog.Options{MaxSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	appendFlushed(t, l, "agent", 300, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := auditlog.Files(path)
	if len(files) < 5 {
		t.Fatalf("%d files, want a rotation every 4 KiB", len(files))
	}
	for _, f := range files {
		// A batch (here 10 lines) is written whole, in one file.
		if fi, _ := os.Stat(f); fi.Size() > 4<<10+10*250 {
			t.Errorf("%s: %d bytes", f, fi.Size())
		}
	}
	reps, last, err := auditlog.VerifySet(path, auditlog.Start{})
	if err != nil || len(reps) != len(files) || last == "" || reps[0].ContinuesMissing != "" {
		t.Fatalf("verify: %+v %q %v", reps, last, err)
	}
	all, events := linesOf(t, path)
	if events != 300 || all != 300+len(files)-1 {
		t.Fatalf("%d lines, %d events, want 300 events and one rotation line per rotated file", all, events)
	}
	// The set continues after a restart, and rotates by the same rules.
	l, err = auditlog.OpenWith(path, auditlog.Options{MaxSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	appendFlushed(t, l, "again", 50, 10)
	l.Close()
	if _, _, err := auditlog.VerifySet(path, auditlog.Start{}); err != nil {
		t.Fatal(err)
	}
}

func TestRotateByAgeAndRetention(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	clock := &fakeClock{now: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)}
	l, err := auditlog.OpenWith(path, auditlog.Options{Clock: clock.Now, MaxAge: time.Hour, MaxFiles: 2, Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	for day := range 5 {
		appendFlushed(t, l, fmt.Sprintf("hour%d", day), 5, 5)
		clock.Add(61 * time.Minute)
	}
	appendFlushed(t, l, "last", 1, 1)
	if err := l.Close(); err != nil { // waits for compression and removal
		t.Fatal(err)
	}
	files, _ := auditlog.Files(path)
	if len(files) != 3 || !strings.HasSuffix(files[0], "Z.gz") || !strings.HasSuffix(files[1], "Z.gz") || files[2] != path {
		t.Fatalf("files %v, want two compressed rotated files and the log", files)
	}
	// Rotated at 10:01, 11:02, 12:03, 13:04 and 14:05: the last two kept.
	if !strings.Contains(files[0], ".20261207T130400.") || !strings.Contains(files[1], ".20261207T140500.") {
		t.Fatalf("kept %v, want the files rotated at 13:04 and 14:05", files[:2])
	}
	// Files removed by max_files: from the genesis, the chain is broken
	// (issue 32: "intact" hid it); from where the kept files begin, it
	// is intact, and says what it continues.
	var be *auditlog.BreakError
	if _, _, err := auditlog.VerifySet(path, auditlog.Start{}); !errors.As(err, &be) || !strings.Contains(err.Error(), "the chain starts at seq 18") {
		t.Fatalf("verify from the genesis: %v", err)
	}
	reps, _, err := auditlog.VerifySet(path, auditlog.Start{Seq: 18})
	if err != nil || !strings.HasPrefix(reps[0].ContinuesMissing, "audit.log.20261207T1") || reps[0].FirstSeq != 18 {
		t.Fatalf("verify: %+v %v", reps, err)
	}
	if _, _, err := auditlog.VerifySet(path, auditlog.Start{Seq: 17}); !errors.As(err, &be) || !strings.Contains(err.Error(), "starts at seq 18, not 17") {
		t.Fatalf("verify from another seq: %v", err)
	}
	if _, _, err := auditlog.VerifySet(path, auditlog.Start{Seq: 18, Prev: strings.Repeat("0", 64)}); !errors.As(err, &be) || !strings.Contains(err.Error(), "was replaced") {
		t.Fatalf("verify with another expected hash: %v", err)
	}
	// The writers recorded where the kept log begins (issue 32): the
	// oldest kept file's first seq and the hash before it, which verify
	// starts from; a file removed beyond max_files is then found.
	kept, ok, err := auditlog.Retained(path)
	if err != nil || !ok || kept.Seq != 18 || len(kept.Prev) != 64 || kept.Prev == strings.Repeat("0", 64) {
		t.Fatalf("retained start %+v %v %v, want seq 18 and the hash before it", kept, ok, err)
	}
	if _, _, err := auditlog.VerifySet(path, kept); err != nil {
		t.Fatalf("verify from the recorded start: %v", err)
	}
	if _, events := linesOf(t, path); events != 11 { // 5+5 kept of 25, and the last
		t.Fatalf("%d events", events)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
	os.Remove(files[0]) // beyond max_files
	if _, _, err := auditlog.VerifySet(path, kept); !errors.As(err, &be) || !strings.Contains(err.Error(), "starts at seq 24, not 18") {
		t.Fatalf("verify with a kept file removed: %v", err)
	}
	// A log max_files never pruned records no start.
	if _, ok, err := auditlog.Retained(filepath.Join(t.TempDir(), "audit.log")); ok || err != nil {
		t.Fatalf("a new log: %v %v", ok, err)
	}
}

// TestVerifySetTampering: a missing, reordered, shortened or replaced file
// is named.
func TestVerifySetTampering(t *testing.T) {
	build := func(t *testing.T) (string, []string) {
		path := filepath.Join(t.TempDir(), "audit.log")
		l, err := auditlog.OpenWith(path, auditlog.Options{MaxSize: 2 << 10})
		if err != nil {
			t.Fatal(err)
		}
		appendFlushed(t, l, "agent", 80, 5)
		l.Close()
		files, _ := auditlog.Files(path)
		if len(files) < 4 {
			t.Fatalf("%d files", len(files))
		}
		return path, files
	}
	base := filepath.Base
	// Every file of the set, the current one included, is its owner's
	// only, whatever the umask.
	t.Run("modes", func(t *testing.T) {
		_, files := build(t)
		for _, f := range files {
			if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v %v, want 0600", base(f), fi.Mode().Perm(), err)
			}
		}
	})
	for _, tc := range []struct {
		name   string
		tamper func(files []string)
		want   func(files []string) string
	}{
		{"a file in the middle removed", func(f []string) { os.Remove(f[1]) },
			func(f []string) string {
				return base(f[2]) + ": line 1: continues " + base(f[1]) + ", which is missing"
			}},
		{"two files swapped", func(f []string) {
			os.Rename(f[1], f[1]+".x")
			os.Rename(f[2], f[1])
			os.Rename(f[1]+".x", f[2])
		}, func(f []string) string {
			return base(f[1]) + ": line 1: continues " + base(f[1]) + ", not " + base(f[0]) + ": the files are out of order"
		}},
		{"lines removed from the end of a rotated file", func(f []string) {
			b, _ := os.ReadFile(f[1])
			ls := strings.SplitAfter(string(b), "\n")
			os.WriteFile(f[1], []byte(strings.Join(ls[:len(ls)-3], "")), 0o600)
		}, func(f []string) string {
			return base(f[2]) + ": line 1: does not continue the last line of " + base(f[1]) + ": lines were removed from its end, or it was replaced"
		}},
		{"lines cut from the head of the oldest file", func(f []string) {
			b, _ := os.ReadFile(f[0])
			ls := strings.SplitAfter(string(b), "\n")
			os.WriteFile(f[0], []byte(strings.Join(ls[2:], "")), 0o600)
		}, func(f []string) string {
			return base(f[0]) + ": line 1: the first line does not start the chain: lines before it were deleted"
		}},
		{"a rotated file emptied", func(f []string) { os.WriteFile(f[1], nil, 0o600) },
			func(f []string) string { return base(f[1]) + ": a rotated file is empty" }},
		{"a line edited in a rotated file", func(f []string) {
			b, _ := os.ReadFile(f[1])
			os.WriteFile(f[1], []byte(strings.Replace(string(b), "agent-", "admin-", 1)), 0o600)
		}, func(f []string) string {
			return base(f[1]) + ": line 2: its hash does not match its content: the line was edited"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, files := build(t)
			tc.tamper(files)
			_, _, err := auditlog.VerifySet(path, auditlog.Start{})
			var be *auditlog.BreakError
			if !errors.As(err, &be) || !strings.HasPrefix(err.Error(), tc.want(files)) {
				t.Fatalf("err = %v\nwant %s", err, tc.want(files))
			}
		})
	}
}

// TestRotateConcurrentWriters: the server and a command line tool append to
// one log, each rotating by the same rules, under one lock: one chain, no
// event lost or written twice.
func TestRotateConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	opts := auditlog.Options{MaxSize: 3 << 10, Compress: true, MaxFiles: 1000}
	server, err := auditlog.OpenWith(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 150 {
				if err := server.Append(event(fmt.Sprintf("server%d-%d", w, i))); err != nil {
					t.Error(err)
				}
				if i%7 == 0 {
					server.Flush()
				}
			}
		}()
	}
	// The command line: open, append one event, close, again and again.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 40 {
			cli, err := auditlog.OpenWith(path, opts)
			if err != nil {
				t.Error(err)
				return
			}
			cli.Append(event(fmt.Sprintf("cli-%d", i)))
			if err := cli.Close(); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := auditlog.Files(path)
	reps, _, err := auditlog.VerifySet(path, auditlog.Start{})
	if err != nil || len(files) < 5 {
		t.Fatalf("%d files: %v", len(files), err)
	}
	all, events := linesOf(t, path)
	if events != 4*150+40 || all-events != len(reps)-1 {
		t.Fatalf("%d events (want %d), %d rotation lines for %d files", events, 4*150+40, all-events, len(reps))
	}
}

// TestRotationFailureFailsClosed: a rotation that cannot happen (here the
// new file cannot be made, as on a full disk) refuses new events, keeps
// what was queued, and writes it all, in one chain, once it can.
func TestRotationFailureFailsClosed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := auditlog.OpenWith(path, auditlog.Options{MaxSize: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	appendFlushed(t, l, "before", 10, 10)
	// What the rotation writes first cannot be made.
	blocker := path + ".next"
	os.MkdirAll(filepath.Join(blocker, "x"), 0o700)
	appendFlushed(t, l, "queued", 10, 10) // past max_size: the rotation fails
	if err := l.Failing(); err == nil || !strings.Contains(err.Error(), "rotate") {
		t.Fatalf("failing = %v, want the rotation's error", err)
	}
	if err := l.Append(event("refused")); err == nil {
		t.Fatal("an event was taken while the log cannot be written")
	}
	os.RemoveAll(blocker)
	l.Flush()
	if err := l.Failing(); err != nil {
		t.Fatalf("after the obstacle went: %v", err)
	}
	l.Close()
	if _, _, err := auditlog.VerifySet(path, auditlog.Start{}); err != nil {
		t.Fatal(err)
	}
	if _, events := linesOf(t, path); events != 20 {
		t.Fatalf("%d events, want the 10 before and the 10 queued", events)
	}
}
