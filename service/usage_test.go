package service

import (
	"math"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service/planner"
)

func TestUsageOf(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(h float64) time.Time { return t0.Add(time.Duration(h * float64(time.Hour))) }
	node := func(id, status, instance string, created, changed float64, price float64, usage api.Resources, hb float64) NodeRecord {
		hbAt := at(hb)
		return NodeRecord{Node: planner.Node{Node: api.Node{ID: id, Status: status, InstanceID: instance, CreatedAt: at(created),
			StatusChangedAt: at(changed), Resources: api.Resources{"CPU": 4, "GPU": 1}, Usage: usage, LastHeartbeatAt: &hbAt}, PricePerHour: price}}
	}
	nodes := []NodeRecord{
		node("a", api.NodeRunning, "i-a", 0, 0, 1, api.Resources{"CPU": 1}, 9),
		node("b", api.NodeRunning, "i-b", 5, 5, 2, api.Resources{"CPU": 2}, 9),
		// Ran two hours, then terminated: costs those two.
		node("c", api.NodeTerminated, "i-c", 1, 3, 4, api.Resources{"CPU": 3}, 3),
		// Never got an instance: costs nothing.
		node("d", api.NodeTerminated, "", 1, 8, 8, nil, 0),
		// Launching: costs while it holds its instance, but holds no capacity yet.
		node("e", api.NodeLaunching, "i-e", 9, 9, 0.5, nil, 0),
		// A made-up report: negative and infinite amounts do not count.
		node("f", api.NodeRunning, "i-f", 10, 10, 0, api.Resources{"CPU": -5, "memory": math.Inf(1)}, 9),
	}
	recent := map[string]ReportedUsage{
		"a": {Usage: api.Resources{"CPU": 3.5}, At: at(9.5)}, // newer than stored
		"b": {Usage: api.Resources{"CPU": 100}, At: at(8)},   // older than stored: ignored
	}
	u := usageOf("cls_x", nodes, recent, at(10))
	want := map[string]int{api.NodeRunning: 3, api.NodeTerminated: 2, api.NodeLaunching: 1}
	if len(u.Nodes) != len(want) {
		t.Fatalf("nodes %v, want %v", u.Nodes, want)
	}
	for k, v := range want {
		if u.Nodes[k] != v {
			t.Fatalf("nodes %v, want %v", u.Nodes, want)
		}
	}
	if u.Capacity["CPU"] != 12 || u.Capacity["GPU"] != 3 {
		t.Errorf("capacity %v, want CPU 12 GPU 3", u.Capacity)
	}
	if u.Used["CPU"] != 5.5 || len(u.Used) != 1 {
		t.Errorf("used %v, want CPU 5.5 only", u.Used)
	}
	if u.CostPerHour != 3 {
		t.Errorf("cost per hour %v, want 3", u.CostPerHour)
	}
	// a: 10 h × 1, b: 5 h × 2, c: 2 h × 4, e: 1 h × 0.5.
	if u.AccruedCost != 28.5 {
		t.Errorf("accrued %v, want 28.5", u.AccruedCost)
	}
	if !u.UpdatedAt.Equal(at(10)) || u.ClusterID != "cls_x" {
		t.Errorf("%+v", u)
	}
}
