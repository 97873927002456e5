package kubetest

import "syscall"

// sysProcAttr puts the child in its own process group (so a stop reaches
// everything it runs) and has the kernel kill it when the test binary dies
// without running its cleanups (a -timeout panic, a SIGKILL).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
