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
