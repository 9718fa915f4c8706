//go:build !unix

package auditlog

import "os"

// Without flock, one process at a time may append to a log.
func lock(*os.File)   {}
func unlock(*os.File) {}
