//go:build linux

package local

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rayplane/rayplane/internal/cloud"
)

// prober reports who it runs as and what of the driver's it can touch,
// then lives like an agent.
const prober = `echo "uid=$(id -u) home=$HOME user=$USER logname=$LOGNAME"
if echo '{}' > ../instance.json 2>/dev/null; then echo "record: written"; else echo "record: refused"; fi
if cat ../agent.log >/dev/null 2>&1; then echo "log: read"; else echo "log: refused"; fi
if touch ../planted 2>/dev/null; then echo "instance dir: written"; else echo "instance dir: refused"; fi
if cat bootstrap.json >/dev/null 2>&1; then echo "bootstrap: read"; else echo "bootstrap: refused"; fi
echo "probe done"
sleep 300 &
wait
`

// TestLaunchAsUser: with Config.User the agent runs as that user, owns its
// own directory and bootstrap file, and can neither rewrite the driver's
// record of it nor read the driver's log of it.
func TestLaunchAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running agents as another user needs root; this test runs as uid", os.Geteuid())
	}
	u, err := LookupUser("nobody")
	if err != nil {
		t.Skip("no user nobody on this host:", err)
	}
	// The user must reach the agent binary and the root: t.TempDir's
	// parent is 0700, so these directories are made searchable.
	base := reachableTempDir(t)
	bin := writeScript(t, base, prober)
	d := newTestDriver(t, prober, func(c *Config) {
		c.Root = filepath.Join(base, "instances")
		c.AgentBinary = bin
		c.User = u
	})
	ctx := context.Background()
	inst, err := d.Launch(ctx, launchRequest("as-user", "cl_u", "nd_u"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(d.Root(), "cl_u", inst.ID)
	work := filepath.Join(dir, agentDir)
	waitFor(t, "the agent's probe", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, logFile))
		return strings.Contains(string(b), "probe done")
	})
	log, _ := os.ReadFile(filepath.Join(dir, logFile))
	for _, want := range []string{
		fmt.Sprintf("uid=%d home=%s user=%s logname=%s", u.UID, u.Home, u.Name, u.Name),
		"record: refused", "log: refused", "instance dir: refused", "bootstrap: read",
	} {
		if !strings.Contains(string(log), want) {
			t.Errorf("agent log lacks %q:\n%s", want, log)
		}
	}
	r := mustRecord(t, d, inst.ID)
	if uid := procUID(t, r.PID); uid != fmt.Sprint(u.UID) {
		t.Errorf("agent runs as uid %s, want %d", uid, u.UID)
	}
	for _, c := range []struct {
		path      string
		uid, gid  uint32
		perm      os.FileMode
		describes string
	}{
		{d.Root(), 0, u.GID, 0o710, "root"},
		{filepath.Join(d.Root(), "cl_u"), 0, u.GID, 0o710, "cluster directory"},
		{dir, 0, u.GID, 0o710, "instance directory"},
		{filepath.Join(dir, recordFile), 0, 0, 0o600, "record"},
		{filepath.Join(dir, logFile), 0, 0, 0o600, "agent log"},
		{work, u.UID, u.GID, 0o700, "agent directory"},
		{filepath.Join(work, bootstrapFile), u.UID, u.GID, 0o600, "bootstrap file"},
	} {
		fi, err := os.Lstat(c.path)
		if err != nil {
			t.Errorf("%s: %v", c.describes, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != c.uid || st.Gid != c.gid || fi.Mode().Perm() != c.perm {
			t.Errorf("%s %s: owner %d:%d mode %v, want %d:%d %v", c.describes, c.path, st.Uid, st.Gid, fi.Mode().Perm(), c.uid, c.gid, c.perm)
		}
	}
	if err := d.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if left := members(t, r.PGID); len(left) != 0 {
		t.Fatalf("processes %v of the agent's group left after terminate", left)
	}
}

// TestListFindsAgentOfOlderLayout: an agent an older driver started names
// the instance directory itself as its work directory; a driver of today
// still finds it, so an upgrade neither loses nor duplicates running nodes.
func TestListFindsAgentOfOlderLayout(t *testing.T) {
	d := newTestDriver(t, sleeper, nil)
	ctx := context.Background()
	dir := filepath.Join(d.Root(), "cl_old", instanceID("old"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(d.cfg.AgentBinary, "agent", "--bootstrap", filepath.Join(dir, bootstrapFile), "--work-dir", dir)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	r := newRecord(instanceID("old"), launchRequest("old", "cl_old", "nd_old"))
	if err := writeRecord(dir, r); err != nil { // pid 0: found by its arguments
		t.Fatal(err)
	}
	got, err := d.List(ctx, map[string]string{cloud.TagCluster: "cl_old"})
	if err != nil || len(got) != 1 || got[0].ID != instanceID("old") {
		t.Fatalf("list answered %+v, %v; want the older agent", got, err)
	}
	if err := d.Terminate(ctx, got[0].ID); err != nil {
		t.Fatal(err)
	}
	if left := members(t, cmd.Process.Pid); len(left) != 0 {
		t.Fatalf("processes %v of the older agent left after terminate", left)
	}
}

func reachableTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "local-driver-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	return dir
}

// procUID answers the real uid /proc/<pid>/status shows.
func procUID(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			return f[1]
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return ""
}

// TestNodeIdentityIsUnprivileged: root, and a user whose primary group is
// root's (uid 11, gid 0 is "operator" on RHEL), are refused as the node
// user, each with a reason; root itself is refused by name lookup too.
func TestNodeIdentityIsUnprivileged(t *testing.T) {
	for _, c := range []struct {
		uid, gid uint64
		want     string
	}{
		{0, 0, "is root"},
		{0, 100, "is root"},
		{11, 0, "has root's group (gid 0) as its primary group"},
		{65534, 65534, ""},
	} {
		err := unprivileged("n", c.uid, c.gid)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("uid %d gid %d: %v, want %q", c.uid, c.gid, err, c.want)
		}
	}
	if _, err := LookupUser("root"); err == nil || !strings.Contains(err.Error(), "is root") {
		t.Errorf("LookupUser(root) = %v", err)
	}
}
