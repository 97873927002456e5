package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// TestUsageFollowsTheRuntime: a head whose runtime burns a CPU while a
// file exists. The cluster's usage (API and CLI) shows its CPU used above
// 0.3 while it burns (a busy loop takes a whole core; 0.3 leaves room for
// a loaded machine) and back under 0.2 once it stops, against the
// capacity of its instance type, with its hourly cost and a cost accrued
// since launch.
func TestUsageFollowsTheRuntime(t *testing.T) {
	s := startServer(t, t.TempDir(), fastFlags...)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // the runtime may run as the node user
		t.Fatal(err)
	}
	burn := filepath.Join(dir, "burn")
	cl := decodeJSON[api.Cloud](t, s.must(t, 201, "POST", "/v1/clouds", fmt.Sprintf(cloudJSON, "usage", "")))
	cc := decodeJSON[api.ComputeConfig](t, s.must(t, 201, "POST", "/v1/compute-configs", fmt.Sprintf(computeJSON, "usage", 0)))
	head := fmt.Sprintf("while :; do if [ -e %s ]; then :; else sleep 0.2; fi; done", burn)
	c := decodeJSON[api.Cluster](t, s.must(t, 201, "POST", "/v1/clusters",
		fmt.Sprintf(`{"name":"usage","cloud_id":%q,"compute_config_id":%q,"runtime":{"head_command":["sh","-c",%q]}}`, cl.ID, cc.ID, head)))
	t.Cleanup(func() { killCluster(t, c.ID) })
	s.waitFor(t, c.ID, time.Minute, "the head running", runningWith(0))

	usage := func() api.ClusterUsage {
		return decodeJSON[api.ClusterUsage](t, s.must(t, 200, "GET", "/v1/clusters/"+c.ID+"/usage", ""))
	}
	var u api.ClusterUsage
	waitFor := func(what string, ok func(api.ClusterUsage) bool) {
		t.Helper()
		waitUntil(t, time.Minute, what, func() bool { u = usage(); return ok(u) })
	}
	// memory is in every report; CPU from the second (it is a rate).
	waitFor("an idle head's usage", func(u api.ClusterUsage) bool { return u.Used["memory"] > 0 && u.Used["CPU"] < 0.2 })
	if u.Nodes[api.NodeRunning] != 1 || u.Capacity["CPU"] <= 0 || u.Capacity["memory"] <= 0 {
		t.Fatalf("idle: %+v", u)
	}

	if err := os.WriteFile(burn, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("the head's CPU used above 0.3", func(u api.ClusterUsage) bool { return u.Used["CPU"] > 0.3 })
	t.Logf("burning: %+v", u)

	r := newCLIRunner(s)
	out := r.must(t, "clusters", "usage", c.ID)
	if !strings.Contains(out, "RESOURCE") || !strings.Contains(out, "CPU") || !strings.Contains(out, "RUNNING 1") || !strings.Contains(out, "USD/h") {
		t.Fatalf("clusters usage:\n%s", out)
	}

	if err := os.Remove(burn); err != nil {
		t.Fatal(err)
	}
	waitFor("the head's CPU used back under 0.2", func(u api.ClusterUsage) bool { return u.Used["CPU"] < 0.2 })

	cluster := s.cluster(t, c.ID)
	j := cliJSON[api.ClusterUsage](t, r, "clusters", "usage", c.ID, "--json")
	if j.ClusterID != c.ID || j.CostPerHour != cluster.HourlyCost || j.CostPerHour <= 0 || j.AccruedCost <= 0 || j.AccruedCost > j.CostPerHour {
		t.Fatalf("clusters usage --json: %+v (cluster's hourly cost %v)", j, cluster.HourlyCost)
	}
}
