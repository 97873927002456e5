package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// The data directory holds the database, the TLS keys, the admin token and
// the secrets key: the operator's alone. rayplaned creates everything in
// it 0600 (0700 for directories) whatever the umask it was started with,
// and puts right at start what an older version, a restore or a hand left
// wider.

// restrictUmask makes every file rayplaned creates without an explicit
// mode the operator's alone; the agents it starts inherit it.
func restrictUmask() { syscall.Umask(0o077) }

// openDataDir creates the data directory (0700) and answers its absolute
// path. It fixes its own mode at once, before anything in it is read.
func openDataDir(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("data directory: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("data directory: %w", err)
	}
	if err := os.Chmod(abs, 0o700); err != nil {
		return "", fmt.Errorf("data directory: %w", err)
	}
	return abs, nil
}

// secureDataDir makes every directory in dir 0700 and every file 0600.
// Links are not followed (the walk does not enter them; their own mode
// means nothing); dir itself is resolved first.
func secureDataDir(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	err = filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var want fs.FileMode
		switch {
		case d.IsDir():
			want = 0o700
		case d.Type().IsRegular():
			want = 0o600
		default:
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != want {
			return os.Chmod(p, want)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("data directory: make it the operator's alone: %w", err)
	}
	return nil
}
