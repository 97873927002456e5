// Package local is the embedded default data plane: each node is a
// `rayplaned agent` process on this machine, in its own process group and its
// own work directory under Config.Root. It is what `make demo`, the tests and
// a laptop user run, behind the same cloud.Driver interface as the aws, gcp
// and kubernetes drivers.
//
// All of its state is on disk (one instance.json per instance) and in /proc,
// never only in memory, so a new Driver on the same Root (a restarted control
// plane) lists and terminates the agents an earlier one started.
//
// A Driver is safe for concurrent use, and so are several Drivers on one
// Root, in one process or in several (control-plane replicas, whose leases
// still let an old and a new one act on a cluster across a failover).
// Launch and Terminate of one instance exclude each other, so one
// idempotency key never starts two agents, and a Terminate never leaves
// behind an agent a Launch was starting: it waits for that Launch and then
// stops its agent. With MaxInstances, Launches that would start an agent
// exclude each other whatever their keys, so the cap holds. The locks are
// flocks on files in Root/.locks, which the kernel drops when their holder
// dies, however it dies; Root must therefore be on a local file system.
// List takes no lock: it may answer an instance that a Terminate under way
// is stopping, as any cloud's listing may.
//
// With Config.User (the control plane runs as root), agents and so their
// runtimes run as that unprivileged user: they may write only their own
// directory, Root/<cluster>/<id>/agent/, and read nothing the driver keeps
// (instance records, the agent's log), so a node cannot make the driver
// signal a process that is not its own.
//
// It must not: signal a process it cannot tie to one of its agents (pids are
// reused), leave a process of an agent's group behind after Terminate, tie an
// agent's life to the control plane's process (agents outlive a control-plane
// restart by design), log the bootstrap payload or hand it over other than as
// a 0600 file of the node's user in the agent's directory, follow a link the
// node's user may have planted when it changes owners, let the node's user
// create, replace or hold one of its lock files, or delete an instance's
// directory and logs. The catalog's resources are declared, not
// reserved. It reads Linux's /proc.
package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rayplane/rayplane/internal/fsutil"

	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/keylock"
)

// Config configures a Driver.
type Config struct {
	// Root holds one directory per instance, Root/<cluster>/<id>/. It is
	// created 0700 when missing (0710 with User, its group the user's, so
	// the user reaches its agents' directories and nothing else).
	Root string
	// User runs the agents as another, unprivileged user; it needs the
	// driver to run as root. Nil runs them as the driver's own user.
	User *User
	// AgentBinary is the absolute path of the rayplaned binary.
	AgentBinary string
	// AgentArgs come before the bootstrap flags; empty means {"agent"}.
	AgentArgs []string
	// TerminateGrace is how long Terminate waits after SIGTERM before it
	// sends SIGKILL; 0 means 5s.
	TerminateGrace time.Duration
	// MaxInstances caps the live instances; beyond it Launch answers a
	// cloud.Capacity error, like a cloud that is out of machines. 0 means
	// no cap.
	MaxInstances int
	// Logger is optional.
	Logger *slog.Logger
	// Env is extra environment (KEY=value) for the agents, optional.
	Env []string
}

// Driver runs nodes as local agent processes. It is safe for concurrent use,
// and so are several Drivers on one Root, in one process or in several (see
// the package comment).
type Driver struct {
	root    string
	lockDir string // Root/.locks, see lock
	cfg     Config
	log     *slog.Logger
	locks   keylock.Locks // this Driver's, taken before the lock file's (see lock)
}

var _ cloud.Driver = (*Driver)(nil)

const (
	defaultGrace = 5 * time.Second
	// killWait bounds the wait for a process group to disappear after
	// SIGKILL; only a process stuck in the kernel takes longer.
	killWait     = 2 * time.Second
	pollInterval = 20 * time.Millisecond
	// lockPoll is how often a Launch or Terminate waiting for another
	// process's lock tries again; those locks are held for milliseconds
	// (a Launch) to TerminateGrace (a Terminate).
	lockPoll = 5 * time.Millisecond

	// Address is where every local instance is reached.
	Address = "127.0.0.1"

	// Environment every agent gets on top of agentEnv and Config.Env.
	EnvClusterID = "RAYPLANE_CLUSTER_ID"
	EnvNodeID    = "RAYPLANE_NODE_ID"
)

// Log keys.
const (
	logInstanceID   = "instance_id"
	logNodeID       = "node_id"
	logClusterID    = "cluster_id"
	logInstanceType = "instance_type"
	logPID          = "pid"
	logPGID         = "pgid"
	logErr          = "err"
)

// New answers a Driver for cfg. It creates Root but does not check the agent
// binary: Verify does, so a misconfigured cloud shows as an error on the
// cloud rather than stopping the control plane.
func New(cfg Config) (*Driver, error) {
	if cfg.Root == "" {
		return nil, errors.New("local driver: root is empty")
	}
	if !filepath.IsAbs(cfg.AgentBinary) {
		return nil, fmt.Errorf("local driver: agent binary %q is not an absolute path", cfg.AgentBinary)
	}
	if cfg.MaxInstances < 0 {
		return nil, fmt.Errorf("local driver: max instances %d is negative", cfg.MaxInstances)
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("local driver: root %s: %w", cfg.Root, err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("local driver: create root: %w", err)
	}
	if err := ShareDir(root, cfg.User); err != nil {
		return nil, fmt.Errorf("local driver: root: %w", err)
	}
	// Agents are recognized by their work directory in /proc/<pid>/cmdline,
	// so the path must be spelled the same way by every Driver on this root.
	if root, err = filepath.EvalSymlinks(root); err != nil {
		return nil, fmt.Errorf("local driver: root %s: %w", cfg.Root, err)
	}
	lockDir := filepath.Join(root, lockDirName)
	if err := ownDir(lockDir); err != nil {
		return nil, fmt.Errorf("local driver: lock directory: %w", err)
	}
	if len(cfg.AgentArgs) == 0 {
		cfg.AgentArgs = []string{"agent"}
	}
	cfg.AgentArgs = slices.Clone(cfg.AgentArgs)
	cfg.Env = slices.Clone(cfg.Env)
	if cfg.TerminateGrace <= 0 {
		cfg.TerminateGrace = defaultGrace
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{root: root, lockDir: lockDir, cfg: cfg, log: log}, nil
}

// Root answers the directory holding the instances' work directories.
func (d *Driver) Root() string { return d.root }

// Launch starts the agent for req, or answers the live one already started
// for req.IdempotencyKey.
func (d *Driver) Launch(ctx context.Context, req cloud.LaunchRequest) (cloud.Instance, error) {
	const op = "launch"
	if err := ctx.Err(); err != nil {
		return cloud.Instance{}, &cloud.Error{Kind: cloud.Transient, Op: op, Err: err}
	}
	if _, ok := cloud.Find(catalog, req.InstanceType); !ok {
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "unknown instance type %q", req.InstanceType)
	}
	switch {
	case req.IdempotencyKey == "":
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "idempotency key is empty")
	case req.NodeID == "":
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node id is empty")
	case len(req.Bootstrap) == 0:
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: bootstrap payload is empty", req.NodeID)
	}
	id := instanceID(req.IdempotencyKey)
	// "Find the key's agent, else start one" must not interleave with
	// another Launch or a Terminate of the same instance, whichever process
	// runs it: two Launches would both start an agent, and a Terminate could
	// retire the record of an agent being started and leave it running.
	unlock, err := d.lock(ctx, op, id)
	if err != nil {
		return cloud.Instance{}, err
	}
	defer unlock()

	dir, err := findDir(d.root, id)
	if err != nil {
		return cloud.Instance{}, d.fail(op, "find instance %s: %w", id, err)
	}
	if dir != "" {
		if inst, ok, err := d.existing(dir, id, req); err != nil || ok {
			return inst, err
		}
	} else {
		dir = filepath.Join(d.root, clusterDir(req.Tags[cloud.TagCluster]), id)
	}

	if d.cfg.MaxInstances > 0 {
		// "Count, then start" must not interleave with another Launch
		// either, whatever its key, or two would both see room for one.
		// Taken after the key's lock, never before: that order for all.
		unlockCap, err := d.lock(ctx, op, capacityLock)
		if err != nil {
			return cloud.Instance{}, err
		}
		defer unlockCap()
		live, err := d.list(nil)
		if err != nil {
			return cloud.Instance{}, d.fail(op, "count instances: %w", err)
		}
		if len(live) >= d.cfg.MaxInstances {
			return cloud.Instance{}, cloud.Errorf(cloud.Capacity, op,
				"%d of %d local instances are running", len(live), d.cfg.MaxInstances)
		}
	}
	return d.start(dir, id, req)
}

// existing handles a Launch whose instance directory already holds a record:
// it answers the instance when its agent is alive, adopting an agent that a
// crashed Launch started without recording its pid. ok false means start one.
func (d *Driver) existing(dir, id string, req cloud.LaunchRequest) (inst cloud.Instance, ok bool, err error) {
	r, err := readRecord(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.log.Warn("local instance record unreadable, launching again", logInstanceID, id, logErr, err)
	}
	if err == nil && alive(dir, r) {
		return toInstance(id, r), true, nil
	}
	pid, st, err := findAgent(dir)
	if err != nil {
		return cloud.Instance{}, false, d.fail("launch", "find agent of %s: %w", id, err)
	}
	if pid == 0 {
		return cloud.Instance{}, false, nil
	}
	r = newRecord(id, req)
	r.PID, r.PGID, r.StartTicks = pid, st.PGID, st.Start
	if err := writeRecord(dir, r); err != nil {
		return cloud.Instance{}, false, d.fail("launch", "record instance %s: %w", id, err)
	}
	d.log.Info("local instance adopted", logInstanceID, id, logNodeID, req.NodeID, logPID, pid)
	return toInstance(id, r), true, nil
}

// start writes the instance's directory and starts its agent.
func (d *Driver) start(dir, id string, req cloud.LaunchRequest) (cloud.Instance, error) {
	const op = "launch"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return cloud.Instance{}, d.fail(op, "create instance directory: %w", err)
	}
	for _, p := range []string{filepath.Dir(dir), dir} {
		if err := ShareDir(p, d.cfg.User); err != nil {
			return cloud.Instance{}, d.fail(op, "instance directory: %w", err)
		}
	}
	work := filepath.Join(dir, agentDir)
	if err := os.Mkdir(work, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return cloud.Instance{}, d.fail(op, "create agent directory: %w", err)
	}
	if err := GiveTo(work, d.cfg.User); err != nil {
		return cloud.Instance{}, d.fail(op, "agent directory: %w", err)
	}
	bootstrap := filepath.Join(work, bootstrapFile)
	if err := fsutil.WriteFileAtomic(bootstrap, req.Bootstrap, 0o600); err != nil {
		return cloud.Instance{}, d.fail(op, "write bootstrap of %s: %w", id, err)
	}
	if err := GiveTo(bootstrap, d.cfg.User); err != nil {
		_ = os.Remove(bootstrap)
		return cloud.Instance{}, d.fail(op, "bootstrap of %s: %w", id, err)
	}
	// Intent before side effect: a record with pid 0 says a Launch is (or
	// was, before a crash) starting this agent; a retried Launch or a
	// Terminate then looks for the agent by its work directory.
	r := newRecord(id, req)
	if err := writeRecord(dir, r); err != nil {
		return cloud.Instance{}, d.fail(op, "record instance %s: %w", id, err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, logFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		_ = os.Remove(filepath.Join(dir, recordFile))
		return cloud.Instance{}, d.fail(op, "open agent log: %w", err)
	}
	cluster := req.Tags[cloud.TagCluster]
	args := append(slices.Clone(d.cfg.AgentArgs), "--bootstrap", bootstrap, "--work-dir", work)
	// Not exec.CommandContext: the agent must outlive this call and the
	// control plane itself. Its own process group keeps a terminal's ^C to
	// the control plane away from it, and lets Terminate stop its children.
	cmd := exec.Command(d.cfg.AgentBinary, args...)
	cmd.Dir = work
	cmd.Env = append(append(d.agentEnv(), d.cfg.Env...),
		EnvClusterID+"="+cluster, EnvNodeID+"="+req.NodeID)
	// An *os.File, not a pipe: Wait then returns when the agent exits,
	// without waiting for its children to close their copies. The file is
	// the driver's; the agent writes it through the descriptor only.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if u := d.cfg.User; u != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: slices.Clone(u.Groups)}
	}
	err = cmd.Start()
	_ = logf.Close()
	if err != nil {
		_ = os.Remove(filepath.Join(dir, recordFile))
		kind := cloud.Transient
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			kind = cloud.Invalid
		}
		return cloud.Instance{}, cloud.Errorf(kind, op, "start agent %s: %w", d.cfg.AgentBinary, err)
	}
	pid := cmd.Process.Pid
	go d.reap(cmd, id)

	r.PID, r.PGID = pid, pid
	if st, err := readStat(pid); err == nil {
		r.StartTicks = st.Start
	}
	if err := writeRecord(dir, r); err != nil {
		// An agent nobody can list would be left behind: stop it.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		return cloud.Instance{}, d.fail(op, "record instance %s: %w", id, err)
	}
	d.log.Info("local instance launched", logInstanceID, id, logNodeID, req.NodeID,
		logClusterID, cluster, logInstanceType, req.InstanceType, logPID, pid)
	return toInstance(id, r), nil
}

// reap waits for an agent this Driver started, so it leaves no zombie while
// the control plane runs. Agents started before a restart are reaped by init.
func (d *Driver) reap(cmd *exec.Cmd, id string) {
	err := cmd.Wait()
	d.log.Info("local agent exited", logInstanceID, id, logPID, cmd.Process.Pid,
		"status", cmd.ProcessState.String(), logErr, err)
}

// List answers the live instances whose tags include every tag given.
func (d *Driver) List(ctx context.Context, tags map[string]string) ([]cloud.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, &cloud.Error{Kind: cloud.Transient, Op: "list", Err: err}
	}
	out, err := d.list(tags)
	if err != nil {
		return nil, d.fail("list", "%w", err)
	}
	return out, nil
}

func (d *Driver) list(tags map[string]string) ([]cloud.Instance, error) {
	dirs, err := recordDirs(d.root)
	if err != nil {
		return nil, err
	}
	var out []cloud.Instance
	for _, dir := range dirs {
		r, err := readRecord(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue // terminated while we looked
		}
		if err != nil {
			// Not skipped: an instance the control plane cannot see would
			// be replaced while its agent runs on.
			return nil, err
		}
		if !hasTags(r.Tags, tags) {
			continue
		}
		if r.PID <= 0 {
			// Recorded before its start (a Launch under way, or one that
			// crashed between the start and the record's pid): find the
			// agent by its work directory, so an instance that runs is never
			// invisible.
			pid, st, err := findAgent(dir)
			if err != nil {
				return nil, err
			}
			if pid == 0 {
				continue
			}
			r.PID, r.PGID, r.StartTicks = pid, st.PGID, st.Start
			if err := d.repairRecord(dir, r); err != nil {
				return nil, err
			}
		}
		if !alive(dir, r) {
			continue
		}
		out = append(out, toInstance(filepath.Base(dir), r))
	}
	slices.SortFunc(out, func(a, b cloud.Instance) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// repairRecord records the pid List found for an instance recorded with
// pid 0, unless a Launch or Terminate of it holds its lock (here or in
// another process): the Launch records the pid itself, and a record written
// behind a Terminate's back would bring back the instance it retired.
func (d *Driver) repairRecord(dir string, found record) error {
	unlock, ok, err := d.tryLock(filepath.Base(dir))
	if err != nil || !ok {
		return err
	}
	defer unlock()
	r, err := readRecord(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil || r.PID > 0 {
		return err
	}
	r.PID, r.PGID, r.StartTicks = found.PID, found.PGID, found.StartTicks
	return writeRecord(dir, r)
}

// Terminate stops the instance's whole process group: SIGTERM, then after
// TerminateGrace SIGKILL, then it waits until no process of the group is
// left. Its directory and logs are kept; instance.json becomes
// terminated.json. An unknown or already-dead instance answers nil.
func (d *Driver) Terminate(ctx context.Context, id string) error {
	const op = "terminate"
	if !validID(id) {
		return nil // not an id this driver gives out: no such instance
	}
	// The instance's id is its key's (instanceID), so this is the lock its
	// Launch holds: a Launch under way finishes first, and its agent is
	// then recorded and stopped here.
	unlock, err := d.lock(ctx, op, id)
	if err != nil {
		return err
	}
	defer unlock()
	dir, err := findDir(d.root, id)
	if err != nil {
		return d.fail(op, "find instance %s: %w", id, err)
	}
	if dir == "" {
		return nil
	}
	pgid, err := d.group(dir)
	if err != nil {
		return d.fail(op, "instance %s: %w", id, err)
	}
	if pgid != 0 {
		if pgid <= 1 || pgid == syscall.Getpgrp() || pgid == os.Getpid() {
			return cloud.Errorf(cloud.Invalid, op, "instance %s: refusing to signal process group %d", id, pgid)
		}
		if err := d.killGroup(ctx, pgid); err != nil {
			return &cloud.Error{Kind: cloud.Transient, Op: op, Err: fmt.Errorf("instance %s: %w", id, err)}
		}
	}
	if err := os.Rename(filepath.Join(dir, recordFile), filepath.Join(dir, terminatedFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return d.fail(op, "instance %s: %w", id, err)
	}
	d.log.Info("local instance terminated", logInstanceID, id, logPGID, pgid)
	return nil
}

// group answers the process group to stop for the instance in dir, or 0
// when nothing of it can be running. It signals nothing it cannot tie to
// the instance: a recorded pid now used by another process means the
// agent's group is gone, since Linux reuses a pid only when no process
// group holds it either.
func (d *Driver) group(dir string) (int, error) {
	r, err := readRecord(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil || r.PID == 0 {
		// A crashed Launch, or a record we cannot read: find the agent by
		// its work directory.
		pid, st, ferr := findAgent(dir)
		if ferr != nil || pid == 0 {
			return 0, ferr
		}
		return st.PGID, nil
	}
	st, err := readStat(r.PID)
	switch {
	case err != nil:
		// The agent is gone; members of its group may not be (a child it
		// left behind when killed alone).
		return r.PGID, nil
	case r.StartTicks != 0 && st.Start == r.StartTicks:
		return r.PGID, nil
	case r.StartTicks == 0 && (st.dead() || isAgentOf(r.PID, dir)):
		return r.PGID, nil
	default:
		return 0, nil // the pid belongs to another process now
	}
}

// killGroup stops every process of group pgid.
func (d *Driver) killGroup(ctx context.Context, pgid int) error {
	members, err := groupMembers(pgid)
	if err != nil || len(members) == 0 {
		return err
	}
	if err := signalGroup(pgid, syscall.SIGTERM); err != nil {
		return err
	}
	if gone, err := waitGone(ctx, pgid, d.cfg.TerminateGrace); err != nil || gone {
		return err
	}
	ctxErr := ctx.Err()
	if err := signalGroup(pgid, syscall.SIGKILL); err != nil {
		return err
	}
	if ctxErr != nil {
		// SIGKILL is sent; the caller's next Terminate checks it worked.
		return ctxErr
	}
	gone, err := waitGone(context.Background(), pgid, killWait)
	if err != nil {
		return err
	}
	if !gone {
		left, _ := groupMembers(pgid)
		return fmt.Errorf("processes %v of group %d still running %s after SIGKILL", left, pgid, killWait)
	}
	d.log.Warn("local instance needed SIGKILL", logPGID, pgid, "grace", d.cfg.TerminateGrace)
	return nil
}

func signalGroup(pgid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal group %d with %v: %w", pgid, sig, err)
	}
	return nil
}

// waitGone polls until no process of group pgid is left, for at most d.
func waitGone(ctx context.Context, pgid int, d time.Duration) (bool, error) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		members, err := groupMembers(pgid)
		if err != nil {
			return false, err
		}
		if len(members) == 0 {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, nil
		case <-deadline.C:
			return false, nil
		case <-tick.C:
		}
	}
}

// Verify checks that Root is writable and the agent binary executable.
func (d *Driver) Verify(ctx context.Context) error {
	const op = "verify"
	if err := ctx.Err(); err != nil {
		return &cloud.Error{Kind: cloud.Transient, Op: op, Err: err}
	}
	f, err := os.CreateTemp(d.root, ".verify-*")
	if err != nil {
		return cloud.Errorf(cloud.Invalid, op, "root %s is not writable: %w", d.root, err)
	}
	_ = f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return cloud.Errorf(cloud.Invalid, op, "root %s: %w", d.root, err)
	}
	fi, err := os.Stat(d.cfg.AgentBinary)
	if err != nil {
		return cloud.Errorf(cloud.Invalid, op, "agent binary %s: %w", d.cfg.AgentBinary, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return cloud.Errorf(cloud.Invalid, op, "agent binary %s is not an executable file (mode %v)", d.cfg.AgentBinary, fi.Mode())
	}
	return nil
}

// InstanceTypes answers the built-in catalog (see catalog.go).
func (d *Driver) InstanceTypes(ctx context.Context) ([]cloud.InstanceType, error) {
	return Catalog(), nil
}

// fail wraps an unexpected failure (disk, /proc) as a transient driver
// error: the reconciler retries it.
func (d *Driver) fail(op, format string, args ...any) error {
	return cloud.Errorf(cloud.Transient, op, format, args...)
}

// alive reports whether the record's agent is running: its pid exists, has
// not exited, and is the process that was started (same start time, and its
// command line names the work directory), not a later one with a reused pid.
func alive(dir string, r record) bool {
	if r.PID <= 0 {
		return false
	}
	st, err := readStat(r.PID)
	if err != nil || st.dead() {
		return false
	}
	if r.StartTicks != 0 && st.Start != r.StartTicks {
		return false
	}
	return isAgentOf(r.PID, dir)
}

func newRecord(id string, req cloud.LaunchRequest) record {
	return record{
		ID:           id,
		NodeID:       req.NodeID,
		InstanceType: req.InstanceType,
		Market:       req.Market,
		Tags:         maps.Clone(req.Tags),
		StartedAt:    time.Now().UTC(),
	}
}

func toInstance(id string, r record) cloud.Instance {
	return cloud.Instance{
		ID:           id,
		NodeID:       r.NodeID,
		InstanceType: r.InstanceType,
		Tags:         maps.Clone(r.Tags),
		State:        cloud.InstanceRunning,
		Address:      Address,
	}
}

func hasTags(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Lock files, in Root/.locks (the driver's alone, 0700): one per instance
// id, and one for the MaxInstances count. They are never removed: a process
// waiting on a lock file that another removed and created again would hold
// a lock nobody else takes. An empty file per key ever launched is the cost.
const (
	lockDirName  = ".locks"
	lockSuffix   = ".lock"
	capacityLock = "capacity" // not an id: ids start with idPrefix
)

// lock takes the lock called name (an instance id, or capacityLock): first
// this Driver's, so its own callers queue without polling, then the lock
// file's, which excludes every other Driver on the Root, in this process or
// another. The kernel drops a flock when its holder dies, so a crashed
// control plane never leaves an instance locked. It waits until ctx is done.
func (d *Driver) lock(ctx context.Context, op, name string) (unlock func(), err error) {
	unlockMem, err := d.locks.Lock(ctx, name)
	if err != nil {
		return nil, &cloud.Error{Kind: cloud.Transient, Op: op, Err: fmt.Errorf("lock %s: %w", name, err)}
	}
	fl, err := fsutil.WaitLock(ctx, filepath.Join(d.lockDir, name+lockSuffix), lockPoll)
	if err != nil {
		unlockMem()
		return nil, &cloud.Error{Kind: cloud.Transient, Op: op, Err: err}
	}
	return func() {
		_ = fl.Unlock() // closing the file drops the lock; there is nothing to undo
		unlockMem()
	}, nil
}

// tryLock takes the lock called name as lock does, or answers ok false at
// once when anyone holds it.
func (d *Driver) tryLock(name string) (unlock func(), ok bool, err error) {
	unlockMem, ok := d.locks.TryLock(name)
	if !ok {
		return nil, false, nil
	}
	fl, err := fsutil.TryLock(filepath.Join(d.lockDir, name+lockSuffix))
	if err != nil {
		unlockMem()
		if errors.Is(err, fsutil.ErrLocked) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return func() {
		_ = fl.Unlock()
		unlockMem()
	}, true, nil
}

// ownDir makes dir a directory of the driver's alone: created 0700 if
// missing, and refused when it is a link or another user's, since whoever
// could replace a lock file could hold the lock forever or make two
// processes take "the" lock on different files.
func ownDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (mode %v)", dir, fi.Mode())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s belongs to uid %d, not to the driver's %d", dir, st.Uid, os.Geteuid())
	}
	return os.Chmod(dir, 0o700)
}

// agentEnv is the part of the control plane's environment agents inherit:
// enough to find programs and behave like a login session, and nothing else,
// so no credential of the control plane's leaks into a node. An agent run as
// another user gets that user's HOME, USER and LOGNAME, as su would give.
func (d *Driver) agentEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	if u := d.cfg.User; u != nil {
		env = slices.DeleteFunc(env, func(kv string) bool {
			return strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "USER=")
		})
		env = append(env, "HOME="+u.Home, "USER="+u.Name, "LOGNAME="+u.Name)
	}
	return env
}
