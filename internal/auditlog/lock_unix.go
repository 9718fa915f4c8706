//go:build unix

package auditlog

import (
	"os"
	"syscall"
)

// lock takes the file's exclusive advisory lock, so that the server and a
// command line tool appending to one log keep one chain.
func lock(f *os.File) { syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }

func unlock(f *os.File) { syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
