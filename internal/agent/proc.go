package agent

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"
)

// The runtime shares the agent's process group (the local driver kills
// that group to terminate a node), so the agent cannot signal a group of
// its own to stop the runtime. Instead it finds the runtime's process tree
// through /proc and signals every member: `ray start --block` forks
// gcs_server, raylet and workers, which would otherwise outlive it.
//
// A process is named by its pid and its start time, so a pid reused by an
// unrelated process after ours exited is never signalled. Where /proc does
// not exist (macOS), the tree is the runtime's own process only.

// proc is one process: pid plus start time in clock ticks since boot.
type proc struct {
	pid   int
	start uint64
}

// procStat is what the agent reads of /proc/<pid>/stat.
type procStat struct {
	proc
	ppid   int
	zombie bool
	ticks  uint64 // utime + stime, in clock ticks
	rss    int64  // resident pages
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times. It is 100 on
// every Linux architecture Go supports; reading it would need cgo.
const clockTicks = 100

// readStat parses /proc/<pid>/stat. The command name may hold spaces and
// parentheses, so fields are counted from the last ')'.
func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state) of proc(5).
	if len(f) < 22 {
		return procStat{}, false
	}
	num := func(k int) uint64 { n, _ := strconv.ParseUint(string(f[k]), 10, 64); return n }
	return procStat{
		proc:   proc{pid: pid, start: num(19)},
		ppid:   int(num(1)),
		zombie: f[0][0] == 'Z' || f[0][0] == 'X',
		ticks:  num(11) + num(12),
		rss:    int64(num(21)),
	}, true
}

// tree answers the live processes of the tree rooted at root, root first.
// Without /proc it answers root alone.
func tree(root int) []procStat {
	rs, ok := readStat(root)
	if !ok {
		return []procStat{{proc: proc{pid: root}}}
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []procStat{rs}
	}
	children := map[int][]procStat{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == root {
			continue
		}
		if st, ok := readStat(pid); ok && !st.zombie {
			children[st.ppid] = append(children[st.ppid], st)
		}
	}
	out := []procStat{rs}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i].pid]...)
	}
	return out
}

// alive reports whether p still runs (is not gone, reused or a zombie).
func (p proc) alive() bool {
	st, ok := readStat(p.pid)
	if !ok {
		if p.start != 0 {
			return false // /proc exists (we read it before): the process is gone
		}
		return syscall.Kill(p.pid, 0) == nil
	}
	return !st.zombie && (p.start == 0 || st.start == p.start)
}

// signal sends sig to p if it is still the same process.
func (p proc) signal(sig syscall.Signal) {
	if p.alive() {
		_ = syscall.Kill(p.pid, sig) // it may have exited since: nothing to do then
	}
}

// usageSampler measures the runtime's process tree: CPUs in use (CPU time
// spent since the last sample divided by the wall time in between) and
// resident memory in bytes. It is what the agent reports as usage; it
// needs only /proc and costs one read per process of the tree.
type usageSampler struct {
	prevAt    time.Time
	prevTicks map[proc]uint64
}

// sample answers {"CPU": cpus, "memory": bytes} for the tree rooted at
// root, or nil when root is 0 or /proc cannot be read.
func (u *usageSampler) sample(root int, now time.Time) map[string]float64 {
	if root == 0 {
		u.prevTicks = nil
		return nil
	}
	procs := tree(root)
	if procs[0].start == 0 {
		return nil // no /proc
	}
	ticks := make(map[proc]uint64, len(procs))
	var spent uint64
	var rss int64
	for _, p := range procs {
		ticks[p.proc] = p.ticks
		rss += p.rss
		if prev, ok := u.prevTicks[p.proc]; ok && p.ticks >= prev {
			spent += p.ticks - prev
		} else if u.prevTicks != nil {
			spent += p.ticks // started since the last sample
		}
	}
	out := map[string]float64{"memory": float64(rss * int64(os.Getpagesize()))}
	if u.prevTicks != nil && now.After(u.prevAt) {
		out["CPU"] = float64(spent) / clockTicks / now.Sub(u.prevAt).Seconds()
	}
	u.prevAt, u.prevTicks = now, ticks
	return out
}

// procSet is the known members of a runtime's process tree other than the
// runtime's own process, which its *exec.Cmd handles.
type procSet map[proc]bool

// rootProc names our child pid by its start time. It is called right
// after starting the child, which cannot be reaped before we Wait; a zero
// start (no /proc, or it exited at once) makes collect a no-op.
func rootProc(pid int) proc {
	st, ok := readStat(pid)
	if !ok {
		return proc{pid: pid}
	}
	return st.proc
}

// collect adds root's current descendants, if root is still the process
// it names.
func (ps procSet) collect(root proc) {
	if root.start == 0 {
		return
	}
	t := tree(root.pid)
	if t[0].start != root.start {
		return // reaped, and the pid reused
	}
	for _, p := range t[1:] {
		ps[p.proc] = true
	}
}

// waitGone waits up to d for the members to be gone.
func (ps procSet) waitGone(d time.Duration) {
	for until := time.Now().Add(d); ps.prune() > 0 && time.Now().Before(until); {
		time.Sleep(20 * time.Millisecond)
	}
}

// prune forgets the members that are gone and answers how many are left.
func (ps procSet) prune() int {
	for p := range ps {
		if !p.alive() {
			delete(ps, p)
		}
	}
	return len(ps)
}

func (ps procSet) signal(sig syscall.Signal) {
	for p := range ps {
		p.signal(sig)
	}
}
