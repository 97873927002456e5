//go:build unix

package fsutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
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
	f, err := openLockFile(path)
	if err != nil {
		return nil, err
	}
	if err := tryFlock(f, path); err != nil {
		f.Close()
		return nil, err
	}
	return &Lock{f: f}, nil
}

// WaitLock takes the lock on path as TryLock does, but while another holder
// has it waits, trying again every poll, until ctx is done; then it answers
// an error wrapping ctx's. A blocking flock cannot be interrupted, hence
// the polling: it suits locks held for milliseconds to seconds.
func WaitLock(ctx context.Context, path string, poll time.Duration) (*Lock, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := openLockFile(path)
	if err != nil {
		return nil, err
	}
	for {
		err := tryFlock(f, path)
		if err == nil {
			return &Lock{f: f}, nil
		}
		if !errors.Is(err, ErrLocked) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(poll):
		}
	}
}

func openLockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

func tryFlock(f *os.File, path string) error {
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("lock %s: %w", path, ErrLocked)
		}
		return fmt.Errorf("lock %s: %w", path, err)
	}
	return nil
}

// Unlock releases the lock.
func (l *Lock) Unlock() error { return l.f.Close() }
