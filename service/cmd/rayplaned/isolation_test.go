package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// The trust boundaries of the local data plane, as a tenant and the
// operator meet them: who may run nodes on this host, what those nodes can
// read, and what the data directory lets through.

// as answers a view of the server that calls with another token.
func (s *server) as(token string) *server {
	c := *s
	c.token = token
	return &c
}

// stop SIGKILLs the server (agents live on, as they would).
func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.exited
	s.exited <- nil // for the Cleanup that waits too
}

// fieldsOf answers the fields a 400 names.
func fieldsOf(t *testing.T, body []byte) []string {
	t.Helper()
	var e struct {
		Error api.Error `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("decode error %s: %v", body, err)
	}
	var out []string
	for _, f := range e.Error.Fields {
		out = append(out, f.Field)
	}
	return out
}

func mustRefuse(t *testing.T, s *server, method, path, body, field string) string {
	t.Helper()
	status, b, err := s.call(method, path, body)
	if err != nil || status != 400 || !slices.Contains(fieldsOf(t, b), field) {
		t.Fatalf("%s %s %s: %d %v %s; want 400 naming %s", method, path, body, status, err, b, field)
	}
	return string(b)
}

// waitUntil polls ok until it holds, failing after limit.
func waitUntil(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLocalDriverIsTheOperatorsChoice: an organization the operator has
// not named in --local-orgs gets a 400 naming provider for a local cloud
// (other providers are fine); named, it runs a local cluster; when a
// restart withdraws the right, its nodes are stopped, its cluster is
// ERRORED with a reason that says why, and it can delete it, while the
// system organization's cluster runs on untouched.
func TestLocalDriverIsTheOperatorsChoice(t *testing.T) {
	dir := t.TempDir()
	flags := append([]string{"--listen", freePort(t)}, fastFlags...)
	s := startServer(t, dir, flags...)
	org := decodeJSON[api.CreateOrganizationResponse](t, s.must(t, 201, "POST", "/v1/orgs", `{"name":"acme"}`))
	acme := s.as(org.AdminToken.Secret)

	body := mustRefuse(t, acme, "POST", "/v1/clouds", fmt.Sprintf(cloudJSON, "acme-local", ""), "provider")
	if !strings.Contains(body, "own host") {
		t.Errorf("the refusal does not say why: %s", body)
	}
	acme.must(t, 201, "POST", "/v1/clouds", `{"name":"acme-aws","provider":"aws","region":"us-east-1",
		"aws":{"role_arn":"arn:aws:iam::123456789012:role/x","subnet_ids":["subnet-0123456789abcdef0"],"image_id":"ami-0123456789abcdef0"},
		"storage_location":"s3://acme-logs"}`)

	s.stop(t)
	s = startServer(t, dir, append(flags, "--local-orgs", "default,acme")...)
	acme = s.as(org.AdminToken.Secret)
	theirs := acme.newCluster(t, "acme", 1, "")
	t.Cleanup(func() { killCluster(t, theirs.ID) })
	mine := s.newCluster(t, "mine", 0, "")
	t.Cleanup(func() { killCluster(t, mine.ID) })
	acme.waitFor(t, theirs.ID, 60*time.Second, "acme's cluster RUNNING", runningWith(1))
	s.waitFor(t, mine.ID, 60*time.Second, "the system organization's cluster RUNNING", runningWith(0))
	mineBefore := procs(t, "RAYPLANE_CLUSTER_ID", mine.ID)
	if len(procs(t, "RAYPLANE_CLUSTER_ID", theirs.ID)) != 4 || len(mineBefore) != 2 {
		t.Fatalf("acme runs %v, the system organization %v; want 2 agents + 2 runtimes and 1 + 1",
			procs(t, "RAYPLANE_CLUSTER_ID", theirs.ID), mineBefore)
	}

	s.stop(t)
	s = startServer(t, dir, flags...) // the default again: the system organization only
	acme = s.as(org.AdminToken.Secret)
	c, ns := acme.waitFor(t, theirs.ID, 60*time.Second, "ERRORED with every node stopped", func(c api.Cluster, ns []api.Node) bool {
		return c.Status == api.ClusterErrored && len(byStatus(ns, api.NodeTerminated)) == len(ns)
	})
	const why = `no driver for this cloud: organization "acme" may not use the local driver: its nodes would run on the control plane's own host, and the operator has not named it in --local-orgs`
	if c.StatusReason != why {
		t.Errorf("reason %q, want %q", c.StatusReason, why)
	}
	for _, n := range ns {
		if !strings.Contains(n.StatusReason, `organization "acme" may no longer use the local driver`) {
			t.Errorf("node %s ended %s (%s), want a reason that says why", n.ID, n.Status, n.StatusReason)
		}
	}
	waitUntil(t, 60*time.Second, "acme's processes to end", func() bool { return len(procs(t, "RAYPLANE_CLUSTER_ID", theirs.ID)) == 0 })
	acme.must(t, 204, "DELETE", "/v1/clusters/"+theirs.ID, "")
	mustRefuse(t, acme, "POST", "/v1/clouds", fmt.Sprintf(cloudJSON, "acme-local-again", ""), "provider")

	s.waitFor(t, mine.ID, 60*time.Second, "the system organization's cluster still RUNNING", runningWith(0))
	if after := procs(t, "RAYPLANE_CLUSTER_ID", mine.ID); !slices.Equal(after, mineBefore) {
		t.Fatalf("the system organization's processes changed from %v to %v", mineBefore, after)
	}
}

// TestLocalStorageLocationConfined: a local cloud's storage location is a
// directory of its organization's own; the data directory, another
// organization's directory, .. and links out are refused with 400 naming
// storage_location, and the answer never shows the server's paths.
func TestLocalStorageLocationConfined(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, "--local-orgs", "default,acme")
	org := decodeJSON[api.CreateOrganizationResponse](t, s.must(t, 201, "POST", "/v1/orgs", `{"name":"acme"}`))
	acme := s.as(org.AdminToken.Secret)
	mine := decodeJSON[api.WhoAmI](t, s.must(t, 200, "GET", "/v1/whoami", "")).Organization.ID
	storage := filepath.Join(dir+"-local", "storage")

	def := decodeJSON[api.Cloud](t, acme.must(t, 201, "POST", "/v1/clouds", `{"name":"default-location","provider":"local"}`))
	if def.StorageLocation != "file://"+def.ID {
		t.Fatalf("default storage location %q, want file://%s", def.StorageLocation, def.ID)
	}
	for _, o := range []string{mine, org.Organization.ID} {
		if err := os.MkdirAll(filepath.Join(storage, o), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(dir, filepath.Join(storage, org.Organization.ID, "to-data")); err != nil {
		t.Fatal(err)
	}
	for _, loc := range []string{
		dir,                             // the data directory
		filepath.Join(dir, "tls"),       // inside it
		filepath.Join(storage, mine),    // another organization's directory
		"file://../" + mine + "/stolen", // .. into it
		"file://logs/../../" + mine,     // .. hidden inside
		"file://to-data",                // a link out
		"file://to-data/tls/new",        // through a link out, to a directory yet to be
		filepath.Join(storage, org.Organization.ID, "to-data"), // the same, absolute
		"relative/without/scheme",
	} {
		mustRefuse(t, acme, "POST", "/v1/clouds", fmt.Sprintf(`{"name":"bad","provider":"local","storage_location":%q}`, loc), "storage_location")
	}
	ok := decodeJSON[api.Cloud](t, acme.must(t, 201, "POST", "/v1/clouds", `{"name":"mine","provider":"local","storage_location":"file://team//logs/"}`))
	if ok.StorageLocation != "file://team/logs" {
		t.Fatalf("storage location answered %q, want it cleaned to file://team/logs", ok.StorageLocation)
	}
	abs := filepath.Join(storage, org.Organization.ID, "abs")
	got := decodeJSON[api.Cloud](t, acme.must(t, 201, "POST", "/v1/clouds", fmt.Sprintf(`{"name":"abs","provider":"local","storage_location":"file://%s/"}`, abs)))
	if got.StorageLocation != abs {
		t.Fatalf("storage location answered %q, want %q", got.StorageLocation, abs)
	}
}

// TestNodeRuntimeCannotReadDataDir: a head command that tries to read the
// admin token and the database finds both denied, runs as the node user,
// and has no secret of the control plane's in its environment.
func TestNodeRuntimeCannotReadDataDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skipf("rayplaned runs nodes as an unprivileged user only when it runs as root; as uid %d its nodes run as "+
			"this same user, who can read the data directory by design (docs/DESIGN.md, Data plane)", os.Geteuid())
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody, the default --node-user:", err)
	}
	// What the control plane's environment may hold must not reach a node.
	t.Setenv("AWS_SECRET_ACCESS_KEY", "control-plane-aws-secret")
	t.Setenv("RAYPLANE_TOKEN", "rpt_control_plane_token")
	dir := t.TempDir()
	s := startServer(t, dir, fastFlags...)
	targets := []string{filepath.Join(dir, "admin-token"), filepath.Join(dir, "rayplane.db")}
	for _, f := range targets {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("nothing to try: %v", err)
		}
	}
	probe := fmt.Sprintf(`for f in %s %s; do cat "$f" > /dev/null 2> cat.err; echo "read $f: status $? $(cat cat.err)"; done
echo "uid $(id -u)"; echo "probe done"; exec sleep 600`, targets[0], targets[1])
	cl := decodeJSON[api.Cloud](t, s.must(t, 201, "POST", "/v1/clouds", fmt.Sprintf(cloudJSON, "probe", "")))
	cc := decodeJSON[api.ComputeConfig](t, s.must(t, 201, "POST", "/v1/compute-configs", fmt.Sprintf(computeJSON, "probe", 0)))
	req, _ := json.Marshal(map[string]any{"name": "probe", "cloud_id": cl.ID, "compute_config_id": cc.ID,
		"runtime": map[string]any{"head_command": []string{"sh", "-c", probe}}})
	c := decodeJSON[api.Cluster](t, s.must(t, 201, "POST", "/v1/clusters", string(req)))
	t.Cleanup(func() { killCluster(t, c.ID) })
	_, ns := s.waitFor(t, c.ID, 60*time.Second, "RUNNING", runningWith(0))

	logPath := filepath.Join(s.storageDir(t, cl.ID), c.ID, ns[0].ID, "runtime.log")
	var log []byte
	waitUntil(t, 60*time.Second, "the probe's report in "+logPath, func() bool {
		log, _ = os.ReadFile(logPath)
		return bytes.Contains(log, []byte("probe done"))
	})
	for _, f := range targets {
		want := fmt.Sprintf("read %s: status 1 cat: %s: Permission denied", f, f)
		if !bytes.Contains(log, []byte(want)) {
			t.Errorf("the runtime's log lacks %q:\n%s", want, log)
		}
	}
	if bytes.Contains(log, []byte(s.token)) {
		t.Errorf("the admin token reached the runtime's log")
	}
	if want := "uid " + nobody.Uid; !bytes.Contains(log, []byte(want)) {
		t.Errorf("the runtime's log lacks %q: it does not run as nobody:\n%s", want, log)
	}

	agent := agentPID(t, ns[0].ID)
	for _, pid := range procs(t, "RAYPLANE_NODE_ID", ns[0].ID) {
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{"control-plane-aws-secret", "rpt_", "rpn_", "rpb_"} {
			if bytes.Contains(environ, []byte(secret)) {
				t.Errorf("process %d of the node (agent %d) has %q in its environment", pid, agent, secret)
			}
		}
		if cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); strings.HasPrefix(cwd, dir+"/") || cwd == dir {
			t.Errorf("process %d of the node works in the data directory: %s", pid, cwd)
		}
	}
}

// TestDataDirIsPrivate: started under umask 000 on a data directory an
// older version left world-readable, rayplaned makes it 0700 and every
// file in it 0600; the local root beside it lets the node user through,
// and no one else.
func TestDataDirIsPrivate(t *testing.T) {
	base := t.TempDir()
	if err := os.Chmod(filepath.Dir(base), 0o711); err != nil { // for the node user, as startServer does
		t.Fatal(err)
	}
	dir := filepath.Join(base, "data")
	if err := os.MkdirAll(filepath.Join(dir, "tls"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, filepath.Join(dir, "tls")} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	leftover := filepath.Join(dir, "leftover")
	if err := os.WriteFile(leftover, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(leftover, 0o644); err != nil {
		t.Fatal(err)
	}
	// The umask is the process's: no test of this package runs in parallel.
	old := syscall.Umask(0)
	s := startServer(t, dir, fastFlags...)
	syscall.Umask(old)
	// A write, so the database's WAL holds something.
	s.must(t, 201, "POST", "/v1/clouds", fmt.Sprintf(cloudJSON, "private", ""))

	seen := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		rel, _ := filepath.Rel(dir, p)
		seen[rel] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{".", "tls", "leftover", "admin-token", "rayplane.db", "rayplane.db-wal", "tls/ca.pem", "tls/ca-key.pem"} {
		if !seen[name] {
			t.Errorf("%s is not in the data directory: %v", name, seen)
		}
	}

	if os.Geteuid() != 0 {
		return
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		return
	}
	for _, p := range []string{dir + "-local", filepath.Join(dir+"-local", "nodes"), filepath.Join(dir+"-local", "storage")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != 0o710 || st.Uid != 0 || fmt.Sprint(st.Gid) != nobody.Gid {
			t.Errorf("%s: %d:%d mode %v; want root's, 0710, group %s (the node user's)", p, st.Uid, st.Gid, fi.Mode().Perm(), nobody.Gid)
		}
	}
}

// TestServeRefusesBadLocalSettings: settings that would put local nodes
// where they must not be, or leave them no user, stop rayplaned at start
// with a message that says what to do.
func TestServeRefusesBadLocalSettings(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"local root in the data directory", []string{"--local-root", filepath.Join(dir, "data", "nodes")}, "must not be inside one another"},
		{"data directory in the local root", []string{"--local-root", dir}, "must not be inside one another"},
		{"not an organization name", []string{"--local-orgs", "default,two words"}, `--local-orgs: "two words" is not an organization name`},
	}
	if os.Geteuid() == 0 {
		cases = append(cases, struct {
			name string
			args []string
			want string
		}{"unknown node user", []string{"--node-user", "rayplane-no-such-user"}, `--node-user: no user "rayplane-no-such-user" on this host`})
	} else {
		cases = append(cases, struct {
			name string
			args []string
			want string
		}{"another node user without root", []string{"--node-user", "root"}, "cannot be started as another user"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(binary, append([]string{"serve", "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0"}, c.args...)...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), c.want) {
				t.Fatalf("serve %v: %v\n%s\nwant a failure saying %q", c.args, err, out, c.want)
			}
		})
	}
}
