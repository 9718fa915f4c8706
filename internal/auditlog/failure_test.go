package auditlog_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/mcpsts/mcpsts/internal/auditlog"
)

func event(subject string) auditlog.Event {
	return auditlog.Event{Name: "token.allow", Attrs: []attribute.KeyValue{attribute.String("mcpsts.subject.id", subject)}}
}

// limitFileSize makes writes past n bytes fail (EFBIG; the Go runtime
// ignores SIGXFSZ), as a full disk would, until the returned func lifts it.
// The limit is the process's: the tests of this package do not run in
// parallel.
func limitFileSize(t *testing.T, n uint64) (lift func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: n, Max: old.Max}); err != nil {
		t.Skipf("cannot limit the file size: %v", err)
	}
	var once sync.Once
	lift = func() {
		once.Do(func() {
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Cleanup(lift)
	return lift
}

// TestWriteFailureRecovers (finding 2 of the security review): a failed
// write does not latch. While the log cannot be written Append refuses
// new events; what was queued stays pending, is retried, and is written
// once the file can grow again, with no partial line left behind; from
// then on Append takes events again. Each change is reported once.
func TestWriteFailureRecovers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := auditlog.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var changes []string
	l.Notify(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			changes = append(changes, "failing")
		} else {
			changes = append(changes, "recovered")
		}
	})
	if err := l.Append(event("before")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first line", func() bool { fi, _ := os.Stat(path); return fi.Size() > 0 })
	fi, _ := os.Stat(path)
	before := fi.Size()

	lift := limitFileSize(t, uint64(before)+40) // part of the next line fits
	if err := l.Append(event("queued-while-writable")); err != nil {
		t.Fatal(err)
	}
	// Until the writer has tried, Append still takes events: each one it
	// takes must be written in the end, none it refuses.
	want := []string{"before", "queued-while-writable"}
	var refused error
	waitFor(t, "Append to refuse", func() bool {
		name := fmt.Sprint("attempt-", len(want))
		if refused = l.Append(event(name)); refused == nil {
			want = append(want, name)
		}
		return refused != nil
	})
	if !errors.Is(refused, syscall.EFBIG) {
		t.Errorf("Append refused with %v, want the write error (EFBIG)", refused)
	}
	if fi, _ := os.Stat(path); fi.Size() != before {
		t.Errorf("the failed write left %d bytes behind", fi.Size()-before)
	}
	lift()
	waitFor(t, "Append to take events again", func() bool { return l.Append(event("after")) == nil })
	want = append(want, "after")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	n, err := verify(path)
	if err != nil {
		t.Fatalf("chain after recovery: %v", err)
	}
	ls := lines(t, path)
	var subjects []string
	for _, line := range ls {
		_, rest, _ := strings.Cut(line, `"subject.id":"`)
		s, _, _ := strings.Cut(rest, `"`)
		subjects = append(subjects, s)
	}
	if n != len(want) || strings.Join(subjects, " ") != strings.Join(want, " ") {
		t.Errorf("lines %v, want %v", subjects, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(changes, " ") != "failing recovered" {
		t.Errorf("transitions %v, want failing then recovered", changes)
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLongLines (finding 3 of the security review): the chain's head is
// read at Open whatever the last line's length, and Verify agrees with
// Open on lines of any length (here 160 KiB and 1.6 MiB).
func TestLongLines(t *testing.T) {
	for _, attrs := range []int{40, 400} {
		path := filepath.Join(t.TempDir(), "audit.log")
		l, err := auditlog.Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		long := auditlog.Event{Name: "admin.trust_map.put"}
		for i := range attrs {
			long.Attrs = append(long.Attrs, attribute.String("mcpsts.x"+strings.Repeat("0", 3)+string(rune('a'+i%26))+strings.Repeat("y", i/26), strings.Repeat("v", 4000)))
		}
		l.Append(event("first"))
		l.Append(long)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if n, err := verify(path); err != nil || n != 2 {
			t.Fatalf("%d attributes: verify %d lines, %v", attrs, n, err)
		}
		l, err = auditlog.Open(path, nil) // the last line is the long one
		if err != nil {
			t.Fatalf("%d attributes: reopen: %v", attrs, err)
		}
		l.Append(event("after a long line"))
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if n, err := verify(path); err != nil || n != 3 {
			t.Fatalf("%d attributes: verify after reopening: %d lines, %v", attrs, n, err)
		}
	}
}

// TestValueBounded: one value cannot make a line unbounded: 64 KiB of
// control bytes (each escaped to six) are cut to 4 KiB, marked.
func TestValueBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := auditlog.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Append(auditlog.Event{Name: "token.deny", Attrs: []attribute.KeyValue{attribute.String("mcpsts.x", strings.Repeat("\x01", 64<<10))}})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ls := lines(t, path)
	if len(ls) != 1 || len(ls[0]) > 6*4096+512 || !strings.Contains(ls[0], `…(truncated)"`) {
		t.Fatalf("line of %d bytes: %.200s", len(ls[0]), ls[0])
	}
}

// TestAppendWhileRecovering: events appended by many goroutines while the
// log fails and recovers (the stop of the race: a record refused as the
// writer recovers kept its buffer, freed, and another record wrote over
// it) all end up whole, once each, in a chain that verifies.
func TestAppendWhileRecovering(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := auditlog.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	accepted := map[string]bool{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// Subjects of different lengths: a buffer written over by
				// another record shows.
				sub := fmt.Sprintf("w%d-%s-%d", w, strings.Repeat("x", i%7), i)
				if l.Append(event(sub)) == nil {
					mu.Lock()
					accepted[sub] = true
					mu.Unlock()
				}
			}
		}()
	}
	for range 6 {
		time.Sleep(30 * time.Millisecond)
		fi, _ := os.Stat(path)
		lift := limitFileSize(t, uint64(fi.Size())+2000)
		time.Sleep(120 * time.Millisecond)
		lift()
	}
	close(stop)
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if n, _, err := auditlog.Verify(strings.NewReader(string(data)), auditlog.Start{}); err != nil || n == 0 {
		t.Fatalf("verify after recoveries: %d lines, %v", n, err)
	}
	lines := strings.Count(string(data), "\n")
	mu.Lock()
	defer mu.Unlock()
	if lines != len(accepted) {
		t.Fatalf("%d events accepted, %d lines", len(accepted), lines)
	}
}
