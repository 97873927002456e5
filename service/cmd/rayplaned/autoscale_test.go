package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// Autoscaling end to end on the local driver: requests grow a cluster,
// withdrawing them shrinks it back after the idle timeout, the cost cap and
// the quota stop growth with the reason visible, and idle termination ends
// a cluster.

// idleTimeout is the worker idle timeout of autoscaledCluster.
const idleTimeout = 3 * time.Second

func (s *server) autoscaledCluster(t *testing.T, name, cloudExtra, ccExtra string) api.Cluster {
	t.Helper()
	cl := decodeJSON[api.Cloud](t, s.must(t, 201, "POST", "/v1/clouds", fmt.Sprintf(cloudJSON, name, cloudExtra)))
	cc := decodeJSON[api.ComputeConfig](t, s.must(t, 201, "POST", "/v1/compute-configs", fmt.Sprintf(
		`{"name":%q,"head_node":{"instance_type":"local.small"},"worker_groups":[{"name":"cpu","instance_type":"local.small","min_nodes":1,"max_nodes":4}],"worker_idle_timeout_seconds":%d%s}`, name, int(idleTimeout.Seconds()), ccExtra)))
	c := decodeJSON[api.Cluster](t, s.must(t, 201, "POST", "/v1/clusters", fmt.Sprintf(clusterJSON, name, cl.ID, cc.ID)))
	t.Cleanup(func() { killCluster(t, c.ID) })
	return c
}

func workersRunning(ns []api.Node) int {
	n := 0
	for _, x := range byStatus(ns, api.NodeRunning) {
		if !x.Head {
			n++
		}
	}
	return n
}

func TestAutoscaleRequestsUpAndIdleDown(t *testing.T) {
	s := startServer(t, t.TempDir(), fastFlags...)
	c := s.autoscaledCluster(t, "elastic", "", "")
	s.waitFor(t, c.ID, 60*time.Second, "RUNNING at min", runningWith(1))

	// Hold capacity for 4 one-CPU bundles (through the CLI): local.small has
	// 1 CPU and, as in Ray, the head's CPU holds one, so the group grows
	// from 1 to 3 workers.
	cli := newCLIRunner(s)
	out := cli.must(t, "clusters", "request", c.ID, "--bundle", "CPU=1,count=4")
	if rows := tableRows(out); len(rows) != 1 || rows[0][0] != "4" || rows[0][1] != "CPU=1" {
		t.Fatalf("clusters request printed %q", out)
	}
	s.waitFor(t, c.ID, 60*time.Second, "3 workers", func(c api.Cluster, ns []api.Node) bool {
		return c.Status == api.ClusterRunning && workersRunning(ns) == 3
	})
	// waitFor reads the cluster before its nodes: read it again, after the
	// nodes were seen RUNNING, for the counts it reports.
	c = s.cluster(t, c.ID)
	if c.NodesRunning != 4 || c.HourlyCost < 0.039 || c.HourlyCost > 0.041 {
		t.Fatalf("cluster reports %d running, %.3f/h; want 4 and 0.04", c.NodesRunning, c.HourlyCost)
	}
	// Held capacity is exempt from idle scale-down: once every worker has
	// been idle longer than the idle timeout (as the nodes report it), the
	// passes that follow leave them be. (A drain for idleness, which the
	// autoscaler's events tell, ends the wait at once: the workers would
	// not all be idle at the same time then.)
	idleDrain := func() bool {
		for _, e := range decodeJSON[api.Page[api.ClusterEvent]](t, s.must(t, 200, "GET", "/v1/clusters/"+c.ID+"/events?limit=500", "")).Items {
			if e.Kind == "autoscaler" && strings.Contains(e.Message, "idle for") {
				return true
			}
		}
		return false
	}
	s.waitFor(t, c.ID, 60*time.Second, "every worker idle past the idle timeout", func(_ api.Cluster, ns []api.Node) bool {
		idle := 0
		for _, n := range byStatus(ns, api.NodeRunning) {
			if !n.Head && n.IdleSince != nil && time.Since(*n.IdleSince) > idleTimeout {
				idle++
			}
		}
		return idle == 3 || idleDrain()
	})
	if !idleDrain() {
		s.afterPasses(t, c.ID, 3)
	}
	if ns := s.nodes(t, c.ID); idleDrain() || workersRunning(ns) != 3 || len(byStatus(ns, api.NodeDraining)) != 0 {
		t.Fatalf("idle workers drained while requests hold 3 of them: %s", describe(ns))
	}
	// Withdraw: back to min after the idle timeout, by draining.
	cli.must(t, "clusters", "request", c.ID, "--withdraw")
	s.waitFor(t, c.ID, 60*time.Second, "back to 1 worker", func(c api.Cluster, ns []api.Node) bool {
		return workersRunning(ns) == 1 && c.NodesTotal == 2
	})
	events := decodeJSON[api.Page[api.ClusterEvent]](t, s.must(t, 200, "GET", "/v1/clusters/"+c.ID+"/events?limit=500", ""))
	var launch, drain bool
	for _, e := range events.Items {
		if e.Kind == "autoscaler" && strings.Contains(e.Message, "launch 2 cpu for resource request") {
			launch = true
		}
		if e.Kind == "autoscaler" && strings.Contains(e.Message, "idle for") {
			drain = true
		}
	}
	if !launch || !drain {
		t.Fatalf("autoscaler events lack the launch (%v) or the idle drain (%v): %+v", launch, drain, events.Items)
	}
	metrics := string(s.must(t, 200, "GET", "/metrics", ""))
	if !strings.Contains(metrics, `rayplane_autoscaler_nodes_launched_total 2`) {
		t.Fatalf("launch metric missing:\n%s", grepLines(metrics, "rayplane_autoscaler"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestAutoscaleLimits(t *testing.T) {
	s := startServer(t, t.TempDir(), fastFlags...)
	// Head and worker cost 0.01/h each: a cap of 0.035 allows one more worker.
	capped := s.autoscaledCluster(t, "capped", "", `,"max_hourly_cost":0.035`)
	// The cloud's quota of 3 nodes allows one more worker too.
	quota := s.autoscaledCluster(t, "quota", `,"quotas":{"max_nodes":3}`, "")
	for _, c := range []api.Cluster{capped, quota} {
		s.waitFor(t, c.ID, 60*time.Second, "RUNNING at min", runningWith(1))
		s.must(t, 200, "POST", "/v1/clusters/"+c.ID+"/resource-requests", `{"bundles":[{"shape":{"CPU":1},"count":4}]}`)
	}
	for _, l := range []struct{ id, want, block string }{
		{capped.ID, "cost cap", "cost_cap"},
		{quota.ID, "quota", "quota_nodes"},
	} {
		got, ns := s.waitFor(t, l.id, 60*time.Second, "growth stopped by "+l.want, func(c api.Cluster, ns []api.Node) bool {
			return workersRunning(ns) == 2 && strings.Contains(c.StatusReason, l.want)
		})
		// Three more passes find the limit in the way (each is counted by
		// its reason, and only this cluster meets this limit), and would
		// have launched if it were not: the node would be there, at least
		// REQUESTED, as soon as the pass is counted.
		series := fmt.Sprintf("rayplane_autoscaler_blocked_total{reason=%q}", l.block)
		from := s.metric(t, series)
		waitUntil(t, 2*time.Minute, "3 more passes blocked by the "+l.want, func() bool { return s.metric(t, series) >= from+3 })
		if ns = s.nodes(t, l.id); workersRunning(ns) != 2 || len(byStatus(ns, api.NodeRunning)) != 3 || len(byStatus(ns, api.NodeTerminated)) != len(ns)-3 {
			t.Fatalf("cluster %s grew past its %s: %s", got.Name, l.want, describe(ns))
		}
		if got.Status != api.ClusterRunning {
			t.Fatalf("cluster %s is %s (%s)", got.Name, got.Status, got.StatusReason)
		}
	}
	// An impossible shape is reported, not launched for.
	s.must(t, 200, "POST", "/v1/clusters/"+quota.ID+"/resource-requests", `{"bundles":[{"shape":{"GPU":8},"count":1}]}`)
	s.waitFor(t, quota.ID, 60*time.Second, "infeasible reported", func(c api.Cluster, _ []api.Node) bool {
		return strings.Contains(c.StatusReason, "infeasible")
	})
}

func TestIdleTermination(t *testing.T) {
	s := startServer(t, t.TempDir(), fastFlags...)
	c := s.autoscaledCluster(t, "sleepy", "", `,"idle_termination_seconds":4`)
	s.waitFor(t, c.ID, 60*time.Second, "RUNNING", runningWith(1))
	c, _ = s.waitFor(t, c.ID, 60*time.Second, "TERMINATED by idle termination", func(c api.Cluster, _ []api.Node) bool {
		return c.Status == api.ClusterTerminated
	})
	events := decodeJSON[api.Page[api.ClusterEvent]](t, s.must(t, 200, "GET", "/v1/clusters/"+c.ID+"/events?limit=500", ""))
	found := false
	for _, e := range events.Items {
		found = found || strings.Contains(e.Message, "idle termination: no work on any node")
	}
	if !found || c.DesiredState != api.DesiredTerminated {
		t.Fatalf("no idle termination recorded (desired %s): %+v", c.DesiredState, events.Items)
	}
	if pids := procs(t, "RAYPLANE_CLUSTER_ID", c.ID); len(pids) != 0 {
		t.Fatalf("processes left: %v", pids)
	}
}
