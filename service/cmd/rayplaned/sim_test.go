package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud/sim"
)

// The sim cloud end to end: a real `rayplaned serve` whose sim clouds'
// nodes a real `rayplaned fleet` simulates over the agent API.

// fleetProc is a running `rayplaned fleet`.
type fleetProc struct {
	url, tokenFile, token string
	stderr                *syncBuffer
}

// startFleet runs `rayplaned fleet` on a random loopback port; its token
// file is created by the fleet.
func startFleet(t *testing.T, extra ...string) *fleetProc {
	t.Helper()
	f := &fleetProc{tokenFile: filepath.Join(t.TempDir(), "fleet-token"), stderr: &syncBuffer{}}
	cmd := exec.Command(binary, append([]string{"fleet", "--listen", "127.0.0.1:0", "--token-file", f.tokenFile}, extra...)...)
	cmd.Stderr = f.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_ = cmd.Wait()
		close(exited)
	}()
	deadline := time.After(60 * time.Second)
	for f.url == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("fleet exited before serving: %s", f.stderr.String())
			}
			f.url, _ = strings.CutPrefix(line, "rayplaned fleet: serving ")
		case <-deadline:
			t.Fatalf("fleet did not start: %s", f.stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	fi, err := os.Stat(f.tokenFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("fleet token file: %v, mode %v; want 0600", err, fi.Mode())
	}
	b, _ := os.ReadFile(f.tokenFile)
	f.token = strings.TrimSpace(string(b))
	return f
}

func (f *fleetProc) do(t *testing.T, method, path string, in, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, f.url+path, body)
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("fleet %s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("fleet %s %s: %v", method, path, err)
	}
}

func (f *fleetProc) stats(t *testing.T) sim.Stats {
	t.Helper()
	var s sim.Stats
	f.do(t, "GET", "/v1/stats", nil, &s)
	return s
}

const simCloudJSON = `{"name":%q,"provider":"sim","heartbeat":{"interval_seconds":1,"lost_after_intervals":3},
	"sim":{"instance_types":[{"name":"sim.cpu4","cpus":4,"memory_bytes":17179869184,"gpus":0,"price_per_hour":0.2},
	{"name":"sim.gpu","cpus":8,"memory_bytes":68719476736,"gpus":1,"price_per_hour":3,"capacity":1}]}}`

// TestSimCluster: a sim cloud of the system organization (another
// organization is refused), a cluster of 200 nodes RUNNING, grown by
// resource requests; silent and killed nodes go LOST and are replaced;
// the fleet's workload shows as usage and grows the cluster by its demand;
// a type beyond its capacity errors a cluster with the reason; deleting
// the clusters leaves no instance in the fleet.
func TestSimCluster(t *testing.T) {
	fl := startFleet(t)
	s := startServer(t, t.TempDir(), append([]string{"--sim-fleet-url", fl.url, "--sim-fleet-token-file", fl.tokenFile,
		"--boot-timeout", "30s"}, fastFlags...)...)

	org := decodeJSON[api.CreateOrganizationResponse](t, s.must(t, 201, "POST", "/v1/orgs", `{"name":"acme"}`))
	if body := mustRefuse(t, s.as(org.AdminToken.Secret), "POST", "/v1/clouds", fmt.Sprintf(simCloudJSON, "acme-sim"), "provider"); !strings.Contains(body, "fleet") {
		t.Errorf("the refusal does not say why: %s", body)
	}

	cl := decodeJSON[api.Cloud](t, s.must(t, 201, "POST", "/v1/clouds", fmt.Sprintf(simCloudJSON, "sim")))
	waitUntil(t, 60*time.Second, "the sim cloud active", func() bool {
		return decodeJSON[api.Cloud](t, s.must(t, 200, "GET", "/v1/clouds/"+cl.ID, "")).Status == api.CloudActive
	})
	types := decodeJSON[api.Page[api.InstanceType]](t, s.must(t, 200, "GET", "/v1/clouds/"+cl.ID+"/instance-types", ""))
	if len(types.Items) != 2 || types.Items[1].GPUs != 1 || types.Items[1].PricePerHour != 3 {
		t.Fatalf("catalog %+v: want the declared types", types.Items)
	}

	cc := decodeJSON[api.ComputeConfig](t, s.must(t, 201, "POST", "/v1/compute-configs",
		`{"name":"big","head_node":{"instance_type":"sim.cpu4"},"worker_groups":[{"name":"cpu","instance_type":"sim.cpu4","min_nodes":199,"max_nodes":230}],"upscaling_speed":100}`))
	c := decodeJSON[api.Cluster](t, s.must(t, 201, "POST", "/v1/clusters", fmt.Sprintf(`{"name":"big","cloud_id":%q,"compute_config_id":%q}`, cl.ID, cc.ID)))
	start := time.Now()
	s.waitFor(t, c.ID, 90*time.Second, "200 nodes RUNNING", func(c api.Cluster, ns []api.Node) bool {
		return c.Status == api.ClusterRunning && len(byStatus(ns, api.NodeRunning)) == 200
	})
	t.Logf("200 nodes RUNNING after %s", time.Since(start).Round(time.Millisecond))
	if st := fl.stats(t); st.Registrations != 200 || st.ByPhase[sim.PhaseRunning] != 200 || st.HeartbeatsOK == 0 {
		t.Fatalf("fleet stats %+v: want 200 registered, running, beating", st)
	}

	// 210 bundles of a whole node's CPUs: 210 nodes, the head among them.
	s.must(t, 200, "POST", "/v1/clusters/"+c.ID+"/resource-requests", `{"bundles":[{"shape":{"CPU":4},"count":210}]}`)
	s.waitFor(t, c.ID, 90*time.Second, "209 workers for the resource request", func(c api.Cluster, ns []api.Node) bool {
		return workersRunning(ns) == 209
	})

	// Faults: 3 workers fall silent, 3 die with their instances. All six
	// go LOST and are replaced.
	var res sim.FaultResult
	fl.do(t, "PUT", "/v1/faults", sim.Faults{Silence: &sim.Pick{Count: 3, ClusterID: c.ID}, Kill: &sim.Pick{Count: 3, ClusterID: c.ID}}, &res)
	if len(res.Silenced) != 3 || len(res.Killed) != 3 {
		t.Fatalf("faults picked %+v", res)
	}
	hit := append(append([]string{}, res.Silenced...), res.Killed...)
	s.waitFor(t, c.ID, 90*time.Second, "the 6 nodes LOST and replaced", func(c api.Cluster, ns []api.Node) bool {
		status := map[string]string{}
		for _, n := range ns {
			status[n.ID] = n.Status
		}
		for _, id := range hit {
			if st := status[id]; st == api.NodeRunning || st == "" {
				return false
			}
		}
		return workersRunning(ns) == 209
	})
	lost := 0
	for _, e := range decodeJSON[api.Page[api.ClusterEvent]](t, s.must(t, 200, "GET", "/v1/clusters/"+c.ID+"/events?limit=500", "")).Items {
		for _, id := range hit {
			if e.Kind == "node_lost" && strings.Contains(e.Message, id) {
				lost++
			}
		}
	}
	if lost != 6 {
		t.Fatalf("%d node_lost events for the 6 nodes hit", lost)
	}

	// A workload of 215 tasks of a whole node: the head places 210 on the
	// running nodes and reports 5 as demand, which grows the cluster until
	// every task is placed and every node reports its 4 CPUs busy.
	var w sim.Workload
	fl.do(t, "PUT", "/v1/workload", sim.Workload{Phases: []sim.Phase{{Tasks: []sim.Tasks{{Shape: api.Resources{"CPU": 4}, Count: 215}}}}}, &w)
	s.waitFor(t, c.ID, 90*time.Second, "215 nodes busy with the workload", func(c api.Cluster, ns []api.Node) bool {
		busy := 0
		for _, n := range byStatus(ns, api.NodeRunning) {
			if n.Usage["CPU"] == 4 && n.IdleSince == nil {
				busy++
			}
		}
		return busy == 215
	})
	grew := false
	for _, e := range decodeJSON[api.Page[api.ClusterEvent]](t, s.must(t, 200, "GET", "/v1/clusters/"+c.ID+"/events?limit=500", "")).Items {
		grew = grew || (e.Kind == "autoscaler" && strings.Contains(e.Message, "for pending demand"))
	}
	if !grew {
		t.Fatal("no autoscaler event launches for the workload's demand")
	}

	// sim.gpu has capacity 1: a group of 2 cannot be had.
	gcc := decodeJSON[api.ComputeConfig](t, s.must(t, 201, "POST", "/v1/compute-configs",
		`{"name":"gpu","head_node":{"instance_type":"sim.cpu4"},"worker_groups":[{"name":"gpu","instance_type":"sim.gpu","min_nodes":2,"max_nodes":2}]}`))
	g := decodeJSON[api.Cluster](t, s.must(t, 201, "POST", "/v1/clusters", fmt.Sprintf(`{"name":"gpu","cloud_id":%q,"compute_config_id":%q}`, cl.ID, gcc.ID)))
	gc, _ := s.waitFor(t, g.ID, 60*time.Second, "ERRORED by capacity", func(c api.Cluster, ns []api.Node) bool {
		return c.Status == api.ClusterErrored
	})
	if !strings.Contains(gc.StatusReason, "capacity") || !strings.Contains(gc.StatusReason, "1 of 1 sim.gpu") {
		t.Fatalf("reason %q: want the capacity error", gc.StatusReason)
	}

	for _, id := range []string{c.ID, g.ID} {
		s.must(t, 202, "DELETE", "/v1/clusters/"+id, "")
	}
	waitUntil(t, 90*time.Second, "no instance left in the fleet", func() bool { return fl.stats(t).Instances == 0 })
	if strings.Contains(s.stderr.String(), fl.token) || strings.Contains(fl.stderr.String(), fl.token) {
		t.Fatal("the fleet token is in a log")
	}
	for _, log := range []string{s.stderr.String(), fl.stderr.String()} {
		if strings.Contains(log, "rpb_") {
			t.Fatal("a bootstrap token is in a log")
		}
	}
	t.Logf("fleet: %+v", fl.stats(t))
}

// TestSimCloudWithoutFleet: a sim cloud on a control plane with no fleet
// verifies to error with a reason naming the flag.
func TestSimCloudWithoutFleet(t *testing.T) {
	s := startServer(t, t.TempDir(), fastFlags...)
	cl := decodeJSON[api.Cloud](t, s.must(t, 201, "POST", "/v1/clouds", fmt.Sprintf(simCloudJSON, "sim")))
	waitUntil(t, 60*time.Second, "the sim cloud in error", func() bool {
		got := decodeJSON[api.Cloud](t, s.must(t, 200, "GET", "/v1/clouds/"+cl.ID, ""))
		return got.Status == api.CloudError && strings.Contains(got.StatusReason, "--sim-fleet-url")
	})
}

// TestFleetFlags: the fleet serves plain HTTP, so only on loopback; a
// token file that is not one token is refused without being echoed.
func TestFleetFlags(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "token")
	if err := os.WriteFile(bad, []byte("rpf_secret part two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open-token")
	if err := os.WriteFile(open, []byte("rpf_readable\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "127.0.0.1:0", "--token-file", open}, "chmod 600"},
		{[]string{"--listen", "0.0.0.0:0", "--token-file", filepath.Join(dir, "t2")}, "loopback"},
		{[]string{"--listen", "127.0.0.1:0", "--token-file", bad}, "one token without spaces"},
		{[]string{"--listen", "127.0.0.1:0", "--token-file", filepath.Join(dir, "t3"), "--launch-failure-fraction", "2"}, "launch_failure_fraction"},
		{[]string{"--listen", "127.0.0.1:0", "--token-file", filepath.Join(dir, "t4"), "--workload", filepath.Join(dir, "none.json")}, "--workload"},
	} {
		out, err := exec.Command(binary, append([]string{"fleet"}, tc.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) || strings.Contains(string(out), "part two") {
			t.Errorf("fleet %v: %v: %s; want a refusal naming %q", tc.args, err, out, tc.want)
		}
	}
}
