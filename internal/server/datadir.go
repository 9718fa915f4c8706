package server

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
)

// ensureDataDir creates dir (0700) if it is missing and checks that it can
// be written. created reports whether this call made it.
func ensureDataDir(dir string) (created bool, err error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, fmt.Errorf("data directory %s: cannot create: %w", dir, unwrapPath(err))
		}
		created = true
	case err != nil:
		return false, fmt.Errorf("data directory %s: %w", dir, unwrapPath(err))
	case !fi.IsDir():
		return false, fmt.Errorf("data directory %s: not a directory", dir)
	}
	probe, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		if created {
			os.RemoveAll(dir)
		}
		return false, fmt.Errorf("data directory %s: not writable: %w", dir, unwrapPath(err))
	}
	probe.Close()
	os.Remove(probe.Name())
	return created, nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// devIssuer is the issuer URL of a dev server bound to addr: its own
// address, or localhost when it listens on every interface.
func devIssuer(addr net.Addr) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return "https://" + net.JoinHostPort(host, port)
}
