package service

import (
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

func TestDeletableAndDesiredState(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name      string
		c         api.Cluster
		desired   string
		status    string
		deletable bool
	}{
		{"pending, nothing launched", api.Cluster{Status: api.ClusterPending, DesiredState: api.DesiredRunning}, api.DesiredTerminated, api.ClusterTerminated, true},
		{"pending with nodes (a retry)", api.Cluster{Status: api.ClusterPending, DesiredState: api.DesiredRunning, NodesTotal: 3}, api.DesiredTerminated, api.ClusterTerminating, false},
		{"errored with nodes", api.Cluster{Status: api.ClusterErrored, DesiredState: api.DesiredRunning, NodesTotal: 1}, api.DesiredTerminated, api.ClusterTerminating, false},
		{"errored retried with nodes", api.Cluster{Status: api.ClusterErrored, DesiredState: api.DesiredRunning, NodesTotal: 1}, api.DesiredRunning, api.ClusterProvisioning, false},
		{"terminated", api.Cluster{Status: api.ClusterTerminated, DesiredState: api.DesiredTerminated}, api.DesiredRunning, api.ClusterPending, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Deletable(c.c); got != c.deletable {
				t.Fatalf("Deletable = %v, want %v", got, c.deletable)
			}
			cl := c.c
			SetDesiredState(&cl, c.desired, now)
			if cl.Status != c.status {
				t.Fatalf("after desired %s: %s (%s), want %s", c.desired, cl.Status, cl.StatusReason, c.status)
			}
		})
	}
}

// TestGeneration: every change of what a cluster should be is a new
// generation, so clients can wait for the control plane to act on it; a
// rename or a request that changes nothing is not.
func TestGeneration(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base := NewCluster(api.ClusterRequest{Name: "c", CloudID: "cld_1", ComputeConfigID: "cc_1", Runtime: api.Runtime{Image: "ray:2"},
		ResourceRequests: []api.ResourceDemand{{Shape: api.Resources{"CPU": 1}, Count: 1}}}, 1, now)
	if base.Generation != 1 || base.ObservedGeneration != 0 {
		t.Fatalf("a new cluster: generation %d, observed %d", base.Generation, base.ObservedGeneration)
	}
	req := func(mod func(*api.ClusterRequest)) api.ClusterRequest {
		r := api.ClusterRequest{Name: "c", CloudID: "cld_1", ComputeConfigID: "cc_1", Runtime: api.Runtime{Image: "ray:2"}, DesiredState: api.DesiredRunning}
		if mod != nil {
			mod(&r)
		}
		return r
	}
	cases := []struct {
		name    string
		status  string
		req     api.ClusterRequest
		version int
		bump    bool
	}{
		{"the same request", api.ClusterRunning, req(nil), 1, false},
		{"a rename", api.ClusterRunning, req(func(r *api.ClusterRequest) { r.Name = "d" }), 1, false},
		{"omitted requests are kept", api.ClusterRunning, req(func(r *api.ClusterRequest) { r.ResourceRequests = nil }), 1, false},
		{"another version", api.ClusterRunning, req(nil), 2, true},
		{"another config", api.ClusterRunning, req(func(r *api.ClusterRequest) { r.ComputeConfigID = "cc_2" }), 1, true},
		{"another runtime", api.ClusterRunning, req(func(r *api.ClusterRequest) { r.Runtime.Env = map[string]string{"A": "1"} }), 1, true},
		{"withdrawn requests", api.ClusterRunning, req(func(r *api.ClusterRequest) { r.ResourceRequests = []api.ResourceDemand{} }), 1, true},
		{"terminate", api.ClusterRunning, req(func(r *api.ClusterRequest) { r.DesiredState = api.DesiredTerminated }), 1, true},
		{"a retry of an ERRORED cluster", api.ClusterErrored, req(nil), 1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			old := base
			old.Status = c.status
			got, err := ReplaceCluster(old, c.req, c.version, now.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if bumped := got.Generation == old.Generation+1; bumped != c.bump || (!bumped && got.Generation != old.Generation) {
				t.Fatalf("generation %d → %d, want a bump: %v", old.Generation, got.Generation, c.bump)
			}
		})
	}
}
