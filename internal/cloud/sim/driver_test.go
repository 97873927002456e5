package sim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/sim"
	"github.com/rayplane/rayplane/internal/cloud/sim/fleet"
)

const (
	testToken = "rpf_driver-test-token-0123456789"
	cloudID   = "cld_01jc0000000000000000000001"
	orgID     = "org_01jc0000000000000000000001"
)

var simCloud = api.SimCloud{InstanceTypes: []api.SimInstanceType{
	{Name: "sim.small", CPUs: 2, MemoryBytes: 4 << 30, PricePerHour: 0.1},
	{Name: "sim.gpu", CPUs: 8, MemoryBytes: 32 << 30, GPUs: 1, PricePerHour: 2, Capacity: 2},
}}

// startFleet serves a real fleet (its agents are not run: these tests are
// about the driver's API) and answers a driver for it.
func startFleet(t *testing.T, faults sim.Faults) (*fleet.Fleet, *sim.Driver) {
	t.Helper()
	f, err := fleet.New(fleet.Config{Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f.Handler(testToken))
	t.Cleanup(srv.Close)
	d, err := sim.New(sim.Config{FleetURL: srv.URL, Token: testToken, CloudID: cloudID, OrgID: orgID, Cloud: simCloud})
	if err != nil {
		t.Fatal(err)
	}
	return f, d
}

func launchReq(node, typ string) cloud.LaunchRequest {
	boot, _ := json.Marshal(api.AgentBootstrap{ControlPlaneURL: "https://127.0.0.1:1", ClusterID: "cls_1", NodeID: node,
		BootstrapToken: "rpb_secret-bootstrap", ExpiresAt: time.Now().Add(time.Hour)})
	return cloud.LaunchRequest{NodeID: node, InstanceType: typ, Market: api.MarketOnDemand, IdempotencyKey: "key-" + node,
		Tags: map[string]string{cloud.TagCluster: "cls_1", cloud.TagGroup: "cpu"}, Bootstrap: boot}
}

func TestLaunchListTerminate(t *testing.T) {
	ctx := context.Background()
	_, d := startFleet(t, sim.Faults{})
	if err := d.Verify(ctx); err != nil {
		t.Fatalf("verify: %v", err)
	}
	a, err := d.Launch(ctx, launchReq("node_a", "sim.small"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := d.Launch(ctx, launchReq("node_a", "sim.small"))
	if err != nil || again.ID != a.ID {
		t.Fatalf("relaunch with the same key answered %+v, %v; want instance %s", again, err, a.ID)
	}
	b, err := d.Launch(ctx, launchReq("node_b", "sim.small"))
	if err != nil {
		t.Fatal(err)
	}
	if a.State != cloud.InstancePending || a.Tags[cloud.TagOrganization] != orgID || a.Tags[cloud.TagManagedBy] != cloud.ManagedByValue {
		t.Fatalf("launched instance %+v: want pending with the owner tags", a)
	}
	list, err := d.List(ctx, map[string]string{cloud.TagCluster: "cls_1"})
	if err != nil || len(list) != 2 {
		t.Fatalf("list answered %d instances, %v; want 2", len(list), err)
	}
	if l, err := d.List(ctx, map[string]string{cloud.TagNode: "node_b"}); err != nil || len(l) != 1 || l[0].ID != b.ID {
		t.Fatalf("list by node answered %+v, %v", l, err)
	}
	if l, err := d.List(ctx, map[string]string{cloud.TagCloud: "cld_other"}); err != nil || len(l) != 0 {
		t.Fatalf("list of another cloud answered %+v, %v", l, err)
	}
	if err := d.Terminate(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := d.Terminate(ctx, a.ID); err != nil {
		t.Fatalf("terminating a terminated instance: %v", err)
	}
	if err := d.Terminate(ctx, "i-not-a-sim-id"); err != nil {
		t.Fatalf("terminating a foreign id: %v", err)
	}
	if l, _ := d.List(ctx, nil); len(l) != 1 || l[0].ID != b.ID {
		t.Fatalf("after terminate, list answered %+v; want only %s", l, b.ID)
	}
	if l, _ := d.List(ctx, map[string]string{cloud.TagCluster: "cls_1"}); len(l) != 1 || l[0].ID != b.ID {
		t.Fatalf("after terminate, list by cluster answered %+v; want only %s", l, b.ID)
	}
	types, err := d.InstanceTypes(ctx)
	if err != nil || len(types) != 2 || types[1].GPUs != 1 || types[1].PricePerHour != 2 {
		t.Fatalf("instance types %+v, %v", types, err)
	}
}

func TestLaunchErrors(t *testing.T) {
	ctx := context.Background()
	_, d := startFleet(t, sim.Faults{})
	// Capacity 2 of sim.gpu: the third is a capacity error until one ends.
	var ids []string
	for i := range 2 {
		in, err := d.Launch(ctx, launchReq(fmt.Sprintf("node_g%d", i), "sim.gpu"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, in.ID)
	}
	_, err := d.Launch(ctx, launchReq("node_g2", "sim.gpu"))
	if cloud.KindOf(err) != cloud.Capacity || !strings.Contains(err.Error(), "2 of 2") {
		t.Fatalf("launch beyond capacity: %v (kind %s); want a capacity error", err, cloud.KindOf(err))
	}
	if err := d.Terminate(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Launch(ctx, launchReq("node_g2", "sim.gpu")); err != nil {
		t.Fatalf("launch after a terminate freed capacity: %v", err)
	}
	if _, err := d.Launch(ctx, launchReq("node_x", "sim.huge")); cloud.KindOf(err) != cloud.Invalid {
		t.Fatalf("undeclared type: %v; want invalid", err)
	}
}

func TestLaunchFaults(t *testing.T) {
	ctx := context.Background()
	f, d := startFleet(t, sim.Faults{CapacityErrorTypes: []string{"sim.small"}})
	if _, err := d.Launch(ctx, launchReq("node_a", "sim.small")); cloud.KindOf(err) != cloud.Capacity {
		t.Fatalf("capacity fault: %v; want a capacity error", err)
	}
	if _, err := d.Launch(ctx, launchReq("node_b", "sim.gpu")); err != nil {
		t.Fatalf("a type without the fault: %v", err)
	}
	if _, err := f.SetFaults(sim.Faults{LaunchFailureFraction: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := d.Launch(ctx, launchReq("node_c", "sim.small"))
	if cloud.KindOf(err) != cloud.Transient || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("launch failure fault: %v; want a transient error", err)
	}
	st := f.Stats()
	if st.CapacityErrors != 1 || st.LaunchFailures != 1 || st.Launches != 1 {
		t.Fatalf("stats %+v: want 1 capacity error, 1 launch failure, 1 launch", st)
	}
}

func TestAuthAndNoFleet(t *testing.T) {
	ctx := context.Background()
	f, _ := fleet.New(fleet.Config{})
	srv := httptest.NewServer(f.Handler(testToken))
	t.Cleanup(srv.Close)
	const wrong = "rpf_wrong-token-that-must-not-leak"
	d, _ := sim.New(sim.Config{FleetURL: srv.URL, Token: wrong, CloudID: cloudID, Cloud: simCloud})
	err := d.Verify(ctx)
	if cloud.KindOf(err) != cloud.Auth || strings.Contains(err.Error(), wrong) {
		t.Fatalf("wrong token: %v; want an auth error that does not show the token", err)
	}
	if _, err := d.Launch(ctx, launchReq("node_a", "sim.small")); cloud.KindOf(err) != cloud.Auth || strings.Contains(err.Error(), "rpb_secret") {
		t.Fatalf("launch with a wrong token: %v", err)
	}
	none, _ := sim.New(sim.Config{CloudID: cloudID, Cloud: simCloud})
	if err := none.Verify(ctx); err == nil || !strings.Contains(err.Error(), "--sim-fleet-url") {
		t.Fatalf("no fleet: %v; want a reason naming --sim-fleet-url", err)
	}
	if _, err := sim.New(sim.Config{FleetURL: "ftp://x"}); err == nil {
		t.Fatal("an ftp:// fleet URL was taken")
	}
}

// A fleet's answers are checked before the control plane uses them.
func TestHostileFleet(t *testing.T) {
	ctx := context.Background()
	good := sim.Instance{ID: "sim-0123456789abcdef0123", CloudID: cloudID, NodeID: "node_a", InstanceType: "sim.small", State: "running",
		Tags: map[string]string{cloud.TagCloud: cloudID, cloud.TagNode: "node_a", cloud.TagCluster: "cls_1"}}
	mut := func(f func(*sim.Instance)) sim.Instance {
		i := good
		i.Tags = map[string]string{}
		for k, v := range good.Tags {
			i.Tags[k] = v
		}
		f(&i)
		return i
	}
	manyTags := map[string]string{}
	for i := range sim.MaxTags + 1 {
		manyTags[fmt.Sprint("k", i)] = "v"
	}
	for _, tc := range []struct {
		name  string
		items []sim.Instance
		raw   string
		want  string
	}{
		{name: "bad id", items: []sim.Instance{mut(func(i *sim.Instance) { i.ID = "../../etc" })}, want: "id: not a sim instance id"},
		{name: "bad state", items: []sim.Instance{mut(func(i *sim.Instance) { i.State = "exploded\n" })}, want: "state"},
		{name: "other cloud", items: []sim.Instance{mut(func(i *sim.Instance) { i.CloudID = "cld_x" })}, want: "cloud_id"},
		{name: "node tag", items: []sim.Instance{mut(func(i *sim.Instance) { i.Tags[cloud.TagNode] = "node_b" })}, want: "node_id"},
		{name: "tag not asked", items: []sim.Instance{mut(func(i *sim.Instance) { i.Tags[cloud.TagCluster] = "cls_2" })}, want: "lacks"},
		{name: "too many tags", items: []sim.Instance{mut(func(i *sim.Instance) {
			for k, v := range manyTags {
				i.Tags[k] = v
			}
		})}, want: "more than 64 tags"},
		{name: "twice", items: []sim.Instance{good, good}, want: "twice"},
		{name: "long address", items: []sim.Instance{mut(func(i *sim.Instance) { i.Address = strings.Repeat("a", 300) })}, want: "address"},
		{name: "not json", raw: "<html>", want: "not the expected JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.raw != "" {
					fmt.Fprint(w, tc.raw)
					return
				}
				_ = json.NewEncoder(w).Encode(sim.InstanceList{Items: tc.items})
			}))
			defer srv.Close()
			d, _ := sim.New(sim.Config{FleetURL: srv.URL, Token: testToken, CloudID: cloudID, Cloud: simCloud})
			_, err := d.List(ctx, map[string]string{cloud.TagCluster: "cls_1"})
			if err == nil || !strings.Contains(err.Error(), tc.want) || cloud.KindOf(err) != cloud.Transient {
				t.Fatalf("list answered %v; want a transient error naming %q", err, tc.want)
			}
		})
	}
	// A launch answer for another node is refused too.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(mut(func(i *sim.Instance) { i.NodeID, i.Tags[cloud.TagNode] = "node_z", "node_z" }))
	}))
	defer srv.Close()
	d, _ := sim.New(sim.Config{FleetURL: srv.URL, Token: testToken, CloudID: cloudID, Cloud: simCloud})
	if _, err := d.Launch(ctx, launchReq("node_a", "sim.small")); err == nil || !strings.Contains(err.Error(), "not of the node launched") {
		t.Fatalf("launch answered another node's instance: %v", err)
	}
	// An error body's message is cut and stripped of control characters.
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusConflict)
		_ = json.NewEncoder(w).Encode(sim.ErrorBody{Kind: sim.ErrCapacity, Message: "no\x1b[31m" + strings.Repeat("x", 5000)})
	}))
	defer srv2.Close()
	d2, _ := sim.New(sim.Config{FleetURL: srv2.URL, Token: testToken, CloudID: cloudID, Cloud: simCloud})
	_, err := d2.Launch(ctx, launchReq("node_a", "sim.small"))
	var ce *cloud.Error
	if !errors.As(err, &ce) || ce.Kind != cloud.Capacity || strings.ContainsRune(err.Error(), 0x1b) || len(err.Error()) > 500 {
		t.Fatalf("hostile error body gave %q", err)
	}
}
