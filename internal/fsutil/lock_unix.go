//go:build unix

package fsutil

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrLocked is TryLock's answer when another holder has the lock.
var ErrLocked = errors.New("locked by another process")

// Lock is an exclusive advisory lock (flock) on a file. The kernel drops
// it when the holder exits, however it exits, so a crashed holder never
// leaves a stale lock behind; the file itself stays.
type Lock struct{ f *os.File }

// TryLock takes the lock on path, creating the file 0600 if needed, or
// answers ErrLocked at once when another open file (in this process or
// another) holds it. The descriptor is close-on-exec, so child processes
// do not inherit the lock.
func TryLock(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the lock.
func (l *Lock) Unlock() error { return l.f.Close() }
