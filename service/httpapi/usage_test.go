package httpapi

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// TestClusterUsage: nodes by status, the capacity and the latest reported
// usage of the RUNNING nodes (from memory before the batch is written, from
// the store after), their hourly cost and the cost accrued since launch; a
// reader may read it, another organization finds no such cluster.
func TestClusterUsage(t *testing.T) {
	e := newDataPlaneEnv(t)
	e.api.cp.Now, e.api.cp.Recent = e.now, e.live
	c, boots := e.launchCluster("use")
	reader := e.newToken(e.admin, api.RoleReader)
	get := func(token string) api.ClusterUsage {
		t.Helper()
		var u api.ClusterUsage
		e.must(200, "GET", "/v1/clusters/"+c.ID+"/usage", token, "").decode(t, &u)
		return u
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

	// Launched, not registered: nothing runs yet.
	u := get(reader)
	if u.ClusterID != c.ID || u.Nodes[api.NodeRunning] != 0 || u.Nodes[api.NodeRegistering]+u.Nodes[api.NodeLaunching] != 2 ||
		len(u.Capacity) != 0 || len(u.Used) != 0 || u.CostPerHour != 0 || u.AccruedCost != 0 || !u.UpdatedAt.Equal(e.now()) {
		t.Fatalf("before registration: %+v", u)
	}

	usage := []string{`{"CPU":0.5,"memory":1000}`, `{"CPU":0.25,"memory":3000}`}
	i := 0
	for nodeID, b := range boots {
		var resp api.AgentRegisterResponse
		e.must(200, "POST", "/v1/agent/register", b.BootstrapToken, fmt.Sprintf(`{"node_id":%q}`, nodeID)).decode(t, &resp)
		e.must(200, "POST", fmt.Sprintf("/v1/agent/clusters/%s/nodes/%s/heartbeat", c.ID, nodeID), resp.NodeCredential,
			fmt.Sprintf(`{"runtime_state":"running","usage":%s}`, usage[i]))
		i++
	}
	want := func(what string) {
		t.Helper()
		u := get(e.admin)
		if u.Nodes[api.NodeRunning] != 2 || len(u.Nodes) != 1 || !near(u.Capacity["CPU"], 2) || u.Capacity["memory"] != 2*(2<<30) ||
			!near(u.Used["CPU"], 0.75) || u.Used["memory"] != 4000 || !near(u.CostPerHour, 0.02) {
			t.Fatalf("%s: %+v", what, u)
		}
	}
	want("heartbeats in memory")
	if err := e.live.Flush(context.Background(), e.st); err != nil {
		t.Fatal(err)
	}
	want("heartbeats stored")

	// Two instances at 0.01/h since their launch.
	e.advance(90 * time.Minute)
	if u := get(e.admin); !near(u.AccruedCost, 0.03) {
		t.Fatalf("after 90 minutes of two nodes at 0.01/h: accrued %v", u.AccruedCost)
	}

	_, other := e.newOrg("elsewhere")
	if got := e.must(404, "GET", "/v1/clusters/"+c.ID+"/usage", other, "").apiError(t); got.Code != api.CodeNotFound {
		t.Fatalf("another org: %+v", got)
	}
	e.must(404, "GET", "/v1/clusters/cls_00000000000000000000000000/usage", e.admin, "")
	e.must(400, "GET", "/v1/clusters/cld_00000000000000000000000000/usage", e.admin, "")
}
