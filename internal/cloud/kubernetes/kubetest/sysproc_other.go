//go:build unix && !linux

package kubetest

import "syscall"

// sysProcAttr puts the child in its own process group. Without Linux's
// parent-death signal a test binary killed before its cleanups leaves the
// processes running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
