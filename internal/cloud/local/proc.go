package local

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// What /proc says about processes. Everything the driver knows about a
// running agent is either on disk (instance.json) or here, so a new Driver
// after a control-plane restart sees exactly what the old one saw.

// procStat is the part of /proc/<pid>/stat the driver uses.
type procStat struct {
	State byte   // R, S, D, Z (zombie), X (dead), ...
	PPID  int    // parent
	PGID  int    // process group
	Start uint64 // start time in clock ticks after boot: pid + Start names one process
}

// dead reports a process that has exited but may still have a /proc entry.
func (s procStat) dead() bool { return s.State == 'Z' || s.State == 'X' }

// readStat parses /proc/<pid>/stat. The command name (field 2) may hold
// spaces and parentheses, so the fields are counted after its last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	// After ')': state(3) ppid(4) pgrp(5) ... starttime(22).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat ppid: %w", pid, err)
	}
	pgid, err := strconv.Atoi(f[2])
	if err != nil {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat pgrp: %w", pid, err)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat starttime: %w", pid, err)
	}
	return procStat{State: f[0][0], PPID: ppid, PGID: pgid, Start: start}, nil
}

// cmdlineHas reports whether one of the process's arguments is exactly arg.
func cmdlineHas(pid int, arg string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	for a := range bytes.SplitSeq(b, []byte{0}) {
		if string(a) == arg {
			return true
		}
	}
	return false
}

// pids answers every process id in /proc.
func pids() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(ents))
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	return out, nil
}

// groupMembers answers the processes of group pgid that have not exited.
// Zombies do not count: they run nothing, and their parent (this process's
// reaper goroutine, or init) removes them.
func groupMembers(pgid int) ([]int, error) {
	all, err := pids()
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []int
	for _, pid := range all {
		st, err := readStat(pid)
		if err != nil {
			continue // exited while we looked
		}
		if st.PGID == pgid && !st.dead() {
			out = append(out, pid)
		}
	}
	return out, nil
}

// isAgentOf reports whether pid is the agent of the instance in dir: its
// arguments name the instance's agent directory (or, for an agent an older
// driver started, the instance directory itself).
func isAgentOf(pid int, dir string) bool {
	return cmdlineHas(pid, filepath.Join(dir, agentDir)) || cmdlineHas(pid, dir)
}

// findAgent answers a live agent of the instance in dir, or 0. It finds an
// agent started by a Launch that crashed before recording the agent's pid.
func findAgent(dir string) (pid int, st procStat, err error) {
	all, err := pids()
	if err != nil {
		return 0, procStat{}, fmt.Errorf("list processes: %w", err)
	}
	for _, p := range all {
		if !isAgentOf(p, dir) {
			continue
		}
		// The agent leads its own process group; a child it forked but has
		// not exec'd yet carries the same command line and must not be
		// taken for it.
		if s, err := readStat(p); err == nil && !s.dead() && s.PGID == p {
			return p, s, nil
		}
	}
	return 0, procStat{}, nil
}
