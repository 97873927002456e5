package provider

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

// The cluster tests make their clouds and compute configs through the API
// (controlPlane.client), so they do not depend on those resources.

const clusterTestAddr = "rayplane_cluster.test"

// clusterTestFixture is a cloud and a compute config a test's clusters use.
type clusterTestFixture struct {
	name     string // unique; also the clusters' name and process mark
	cloudID  string
	configID string
	config   api.ComputeConfigRequest
	// others are clusters of the cloud made through the API, not by
	// Terraform (see occupy); CheckDestroy leaves them be.
	others map[string]bool
}

// clusterTestOption changes the cloud or the compute config of a fixture
// before they are made.
type clusterTestOption func(*api.CloudSpec, *api.ComputeConfigRequest)

// newClusterTestFixture skips the test without TF_ACC (as resource.Test
// would, but before anything is created), then makes a local cloud with
// fast heartbeats and maxNodes as its quota (0: none), and a compute config
// with one head and a worker group "cpu" of minWorkers..4 local.small nodes
// (0.01 USD per hour each).
func newClusterTestFixture(t *testing.T, prefix string, minWorkers, maxNodes int, opts ...clusterTestOption) clusterTestFixture {
	t.Helper()
	if os.Getenv(resource.EnvTfAcc) == "" {
		t.Skipf("acceptance test: set %s=1", resource.EnvTfAcc)
	}
	testAccPreCheck(t)
	ctx := context.Background()
	fx := clusterTestFixture{name: uniqueName(prefix), others: map[string]bool{}}
	spec := api.CloudSpec{Name: fx.name, Provider: api.ProviderLocal,
		Heartbeat: api.HeartbeatConfig{IntervalSeconds: 1, LostAfter: 2}}
	if maxNodes > 0 {
		spec.Quotas.MaxNodes = &maxNodes
	}
	fx.config = api.ComputeConfigRequest{Name: fx.name, ComputeConfigSpec: api.ComputeConfigSpec{
		HeadNode:     api.HeadNode{InstanceType: "local.small"},
		WorkerGroups: []api.WorkerGroup{{Name: "cpu", InstanceType: "local.small", MinNodes: minWorkers, MaxNodes: 4}},
	}}
	for _, o := range opts {
		o(&spec, &fx.config)
	}
	cloud, err := controlPlane.client.CreateCloud(ctx, spec)
	if err != nil {
		t.Fatalf("create cloud: %v", err)
	}
	fx.cloudID = cloud.ID
	cc, err := controlPlane.client.CreateComputeConfig(ctx, fx.config)
	if err != nil {
		t.Fatalf("create compute config: %v", err)
	}
	fx.configID = cc.ID
	t.Cleanup(func() {
		// After resource.Test has destroyed its clusters; a cluster left
		// over makes these conflicts, which CheckDestroy reports better.
		if err := controlPlane.client.DeleteComputeConfig(ctx, fx.configID); err != nil {
			t.Logf("delete compute config %s: %v", fx.configID, err)
		}
		if err := controlPlane.client.DeleteCloud(ctx, fx.cloudID); err != nil {
			t.Logf("delete cloud %s: %v", fx.cloudID, err)
		}
	})
	return fx
}

// addConfig makes another compute config, the fixture's changed by change,
// and answers its id.
func (fx clusterTestFixture) addConfig(t *testing.T, change func(*api.ComputeConfigRequest)) string {
	t.Helper()
	ctx := context.Background()
	req := fx.config
	req.Name = uniqueName(fx.name)
	req.WorkerGroups = slices.Clone(req.WorkerGroups)
	change(&req)
	cc, err := controlPlane.client.CreateComputeConfig(ctx, req)
	if err != nil {
		t.Fatalf("create compute config: %v", err)
	}
	t.Cleanup(func() {
		if err := controlPlane.client.DeleteComputeConfig(ctx, cc.ID); err != nil {
			t.Logf("delete compute config %s: %v", cc.ID, err)
		}
	})
	return cc.ID
}

// occupy runs a head-only cluster in the fixture's cloud through the API,
// so that one node of the cloud's quota is in use by another cluster, and
// waits until it runs. It is deleted when the test ends.
func (fx clusterTestFixture) occupy(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	configID := fx.addConfig(t, func(r *api.ComputeConfigRequest) { r.WorkerGroups = []api.WorkerGroup{} })
	c, err := controlPlane.client.CreateCluster(ctx, api.ClusterRequest{Name: uniqueName(fx.name + "-other"), CloudID: fx.cloudID,
		ComputeConfigID: configID, Runtime: api.Runtime{HeadCmd: []string{"sh", "-c", "exec sleep 600"}}}, "")
	if err != nil {
		t.Fatalf("create cluster: %v", err)
	}
	fx.others[c.ID] = true
	t.Cleanup(func() { // before the config's cleanup, registered earlier
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := deleteClusterAndWait(ctx, controlPlane.client, c.ID, time.Minute); err != nil {
			t.Errorf("delete cluster %s: %v", c.ID, err)
		}
	})
	if err := clusterTestWait(c.ID, "RUNNING", func(c api.Cluster, err error) bool {
		return err == nil && c.Status == api.ClusterRunning
	}); err != nil {
		t.Fatal(err)
	}
}

// clusterTestProviders is the terraform block naming the provider's
// source as the harness registers it (TF_ACC_PROVIDER_HOST and
// TF_ACC_PROVIDER_NAMESPACE, e.g. registry.opentofu.org/rayplane):
// without it OpenTofu would look for hashicorp/rayplane.
func clusterTestProviders() string {
	host, ns := os.Getenv(resource.EnvTfAccProviderHost), os.Getenv(resource.EnvTfAccProviderNamespace)
	if host == "" {
		host = "registry.terraform.io"
	}
	if ns == "" {
		ns = "hashicorp"
	}
	return fmt.Sprintf(`
terraform {
  required_providers {
    rayplane = { source = %q }
  }
}
`, host+"/"+ns+"/rayplane")
}

// hcl is a cluster of the fixture whose nodes just sleep (no Ray needed),
// marked in their environment with the fixture's name. extra goes into
// the resource block.
func (fx clusterTestFixture) hcl(extra string) string {
	return fx.hclIn(fx.cloudID, fx.configID, extra)
}

// hclIn is hcl in another cloud or with another compute config.
func (fx clusterTestFixture) hclIn(cloudID, configID, extra string) string {
	return clusterTestProviders() + fmt.Sprintf(`
resource "rayplane_cluster" "test" {
  name              = %q
  cloud_id          = %q
  compute_config_id = %q
  runtime = {
    head_command   = ["sh", "-c", "exec sleep 600"]
    worker_command = ["sh", "-c", "exec sleep 600"]
    env            = { RAYPLANE_ACC_MARK = %q }
  }
%s
}
`, fx.name, cloudID, configID, fx.name, extra)
}

// clusterTestProcs answers the live processes whose environment holds
// key=value: agents and runtimes carry RAYPLANE_CLUSTER_ID, runtimes also
// the runtime env of the config.
func clusterTestProcs(key, value string) []int {
	want := []byte(key + "=" + value + "\x00")
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append(env, 0), want) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 0 && f[0] == "Z" {
				continue // a zombie runs nothing
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// clusterTestNoProcs checks that no process carries key=value, giving
// processes that were just signalled time to exit (generously: a loaded
// machine may take a while to schedule them).
func clusterTestNoProcs(key, value string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		pids := clusterTestProcs(key, value)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes with %s=%s still run: %v", key, value, pids)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func clusterTestNodes(id string) ([]api.Node, error) {
	return client.All(context.Background(), func(ctx context.Context, o api.ListOptions) (api.Page[api.Node], error) {
		return controlPlane.client.ListNodes(ctx, id, o)
	})
}

// clusterTestWait polls the API (not the provider) until ok says yes.
func clusterTestWait(id, what string, ok func(api.Cluster, error) bool) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := controlPlane.client.GetCluster(context.Background(), id)
		if ok(c, err) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster %s: timed out waiting for %s; last %s (%s), err %v", id, what, c.Status, c.StatusReason, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clusterTestID records the cluster's id in the state into *id.
func clusterTestID(id *string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		rs, ok := s.RootModule().Resources[clusterTestAddr]
		if !ok {
			return fmt.Errorf("%s not in state", clusterTestAddr)
		}
		*id = rs.Primary.ID
		return nil
	}
}

// testAccCheckClusterGone is the CheckDestroy of the cluster tests: every
// cluster of the fixture is gone from the API, and no process of them (by
// cluster id, and by the config's mark) is left.
func testAccCheckClusterGone(fx clusterTestFixture, ids ...*string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		ctx := context.Background()
		for _, id := range ids {
			if *id == "" {
				continue
			}
			if _, err := controlPlane.client.GetCluster(ctx, *id); !api.IsCode(err, api.CodeNotFound) {
				return fmt.Errorf("cluster %s: want 404 after destroy, got err %v", *id, err)
			}
			if err := clusterTestNoProcs("RAYPLANE_CLUSTER_ID", *id); err != nil {
				return err
			}
		}
		page, err := controlPlane.client.ListClusters(ctx, client.ClusterFilter{CloudID: fx.cloudID}, api.ListOptions{})
		if err != nil {
			return err
		}
		for _, c := range page.Items {
			if !fx.others[c.ID] {
				return fmt.Errorf("cluster %s (%s) left in cloud %s", c.ID, c.Status, fx.cloudID)
			}
		}
		page, err = controlPlane.client.ListClusters(ctx, client.ClusterFilter{Name: fx.name}, api.ListOptions{})
		if err != nil {
			return err
		}
		if len(page.Items) != 0 {
			return fmt.Errorf("a cluster named %s is left: %+v", fx.name, page.Items)
		}
		return clusterTestNoProcs("RAYPLANE_ACC_MARK", fx.name)
	}
}

// clusterTestCheckGoneStep follows a step whose create failed: nothing was
// put in the state, so CheckDestroy would not run; this step applies an
// empty configuration and checks that the failed create left nothing.
func clusterTestCheckGoneStep(fx clusterTestFixture) resource.TestStep {
	return resource.TestStep{Config: clusterTestProviders(), Check: testAccCheckClusterGone(fx)}
}

func clusterAttr(name string, v knownvalue.Check) statecheck.StateCheck {
	return statecheck.ExpectKnownValue(clusterTestAddr, tfjsonpath.New(name), v)
}

func clusterEmptyPlanAfterApply() resource.ConfigPlanChecks {
	return resource.ConfigPlanChecks{PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}}
}

// TestAccClusterResource_lifecycle: create, resize in place, terminate and
// start, drift (terminated and deleted out of band), import, destroy.
func TestAccClusterResource_lifecycle(t *testing.T) {
	fx := newClusterTestFixture(t, "acc-cluster", 2, 0)
	var firstID, secondID string
	var runningBefore []string // node ids RUNNING before the resize
	pinned2 := "  compute_config_version = 2\n"

	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             testAccCheckClusterGone(fx, &firstID, &secondID),
		Steps: []resource.TestStep{
			{
				// 1 head + 2 workers, RUNNING when create returns.
				Config: fx.hcl(""),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(clusterTestAddr, plancheck.ResourceActionCreate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					clusterAttr("id", knownvalue.StringRegexp(clusterIDPattern)),
					clusterAttr("status", knownvalue.StringExact("RUNNING")),
					clusterAttr("desired_state", knownvalue.StringExact("running")),
					clusterAttr("compute_config_version", knownvalue.Int64Exact(1)),
					clusterAttr("nodes_running", knownvalue.Int64Exact(3)),
					clusterAttr("nodes_total", knownvalue.Int64Exact(3)),
					clusterAttr("head_address", knownvalue.NotNull()),
					clusterAttr("runtime", knownvalue.ObjectPartial(map[string]knownvalue.Check{
						"head_command": knownvalue.ListExact([]knownvalue.Check{
							knownvalue.StringExact("sh"), knownvalue.StringExact("-c"), knownvalue.StringExact("exec sleep 600")}),
						"image": knownvalue.Null(),
					})),
				},
				Check: resource.ComposeTestCheckFunc(
					clusterTestID(&firstID),
					func(*terraform.State) error {
						nodes, err := clusterTestNodes(firstID)
						if err != nil {
							return err
						}
						runningBefore = nil
						for _, n := range nodes {
							if n.Status == api.NodeRunning {
								runningBefore = append(runningBefore, n.ID)
							}
						}
						if len(runningBefore) != 3 {
							return fmt.Errorf("want 3 RUNNING nodes, got %d: %+v", len(runningBefore), nodes)
						}
						// Each node: its agent and its runtime.
						if pids := clusterTestProcs("RAYPLANE_CLUSTER_ID", firstID); len(pids) < 6 {
							return fmt.Errorf("want the processes of 3 nodes, found %v", pids)
						}
						return nil
					},
				),
			},
			{
				// A new compute config version with a third worker, followed
				// in place: the old nodes keep running, one worker is added.
				PreConfig: func() {
					req := fx.config
					req.WorkerGroups = slices.Clone(req.WorkerGroups)
					req.WorkerGroups[0].MinNodes = 3
					cc, err := controlPlane.client.UpdateComputeConfig(context.Background(), fx.configID, req)
					if err != nil || cc.Version != 2 {
						t.Fatalf("update compute config: version %d, err %v", cc.Version, err)
					}
				},
				Config: fx.hcl(pinned2),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(clusterTestAddr, plancheck.ResourceActionUpdate),
						plancheck.ExpectKnownValue(clusterTestAddr, tfjsonpath.New("id"), knownvalue.StringFunc(func(v string) error {
							if v != firstID {
								return fmt.Errorf("want the same cluster %s, plan has %s", firstID, v)
							}
							return nil
						})),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					clusterAttr("compute_config_version", knownvalue.Int64Exact(2)),
					clusterAttr("status", knownvalue.StringExact("RUNNING")),
					clusterAttr("nodes_running", knownvalue.Int64Exact(4)),
				},
				Check: func(*terraform.State) error {
					nodes, err := clusterTestNodes(firstID)
					if err != nil {
						return err
					}
					status := map[string]string{}
					workers := 0
					for _, n := range nodes {
						status[n.ID] = n.Status
						if !n.Head && n.Status == api.NodeRunning {
							workers++
						}
					}
					for _, id := range runningBefore {
						if status[id] != api.NodeRunning {
							return fmt.Errorf("node %s was RUNNING before the resize and is %q now: nodes were restarted", id, status[id])
						}
					}
					if workers != 3 {
						return fmt.Errorf("want 3 RUNNING workers after the resize, got %d", workers)
					}
					return nil
				},
			},
			{
				Config: fx.hcl(pinned2 + "  desired_state = \"terminated\"\n"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(clusterTestAddr, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					clusterAttr("status", knownvalue.StringExact("TERMINATED")),
					clusterAttr("desired_state", knownvalue.StringExact("terminated")),
					clusterAttr("nodes_running", knownvalue.Int64Exact(0)),
					clusterAttr("nodes_total", knownvalue.Int64Exact(0)),
					clusterAttr("head_address", knownvalue.Null()),
				},
				Check: func(*terraform.State) error { return clusterTestNoProcs("RAYPLANE_CLUSTER_ID", firstID) },
			},
			{
				Config: fx.hcl(pinned2),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(clusterTestAddr, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					clusterAttr("status", knownvalue.StringExact("RUNNING")),
					clusterAttr("nodes_running", knownvalue.Int64Exact(4)),
				},
			},
			{
				// Terminated out of band: the plan takes it back to running.
				PreConfig: func() {
					ctx := context.Background()
					c, err := controlPlane.client.GetCluster(ctx, firstID)
					if err != nil {
						t.Fatal(err)
					}
					req := api.ClusterRequest{Name: c.Name, CloudID: c.CloudID, ComputeConfigID: c.ComputeConfigID,
						ComputeConfigVersion: c.ComputeConfigVersion, Runtime: c.Runtime, DesiredState: api.DesiredTerminated}
					if _, err := controlPlane.client.UpdateCluster(ctx, firstID, req); err != nil {
						t.Fatal(err)
					}
					if err := clusterTestWait(firstID, "TERMINATED", func(c api.Cluster, err error) bool {
						return err == nil && c.Status == api.ClusterTerminated
					}); err != nil {
						t.Fatal(err)
					}
				},
				Config: fx.hcl(pinned2),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(clusterTestAddr, plancheck.ResourceActionUpdate),
						plancheck.ExpectKnownValue(clusterTestAddr, tfjsonpath.New("desired_state"), knownvalue.StringExact("running")),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					clusterAttr("status", knownvalue.StringExact("RUNNING")),
					clusterAttr("nodes_running", knownvalue.Int64Exact(4)),
				},
			},
			{
				Config:                  fx.hcl(pinned2),
				ResourceName:            clusterTestAddr,
				ImportState:             true,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"timeouts"},
			},
			{
				// Deleted out of band: the plan creates it again.
				PreConfig: func() {
					if _, err := controlPlane.client.DeleteCluster(context.Background(), firstID); err != nil {
						t.Fatal(err)
					}
					if err := clusterTestWait(firstID, "deletion", func(_ api.Cluster, err error) bool {
						return api.IsCode(err, api.CodeNotFound)
					}); err != nil {
						t.Fatal(err)
					}
				},
				Config: fx.hcl(pinned2),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(clusterTestAddr, plancheck.ResourceActionCreate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					clusterAttr("status", knownvalue.StringExact("RUNNING")),
					clusterAttr("compute_config_version", knownvalue.Int64Exact(2)),
					clusterAttr("nodes_running", knownvalue.Int64Exact(4)),
				},
				Check: resource.ComposeTestCheckFunc(
					clusterTestID(&secondID),
					func(*terraform.State) error {
						if secondID == firstID {
							return fmt.Errorf("want a new cluster, state still has %s", firstID)
						}
						return nil
					},
				),
			},
		},
	})
}

// TestAccClusterResource_createFailureCleanup: a cluster the cloud's quota
// cannot hold ends ERRORED; create reports the control plane's reason and
// deletes what it started (the head was launched). The plan passes: the
// cluster's own minimum (3 nodes) fits the quota of 3, but another cluster
// holds one of them, which only the control plane counts.
func TestAccClusterResource_createFailureCleanup(t *testing.T) {
	fx := newClusterTestFixture(t, "acc-cluster-quota", 2, 3)
	fx.occupy(t)
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			{
				Config:      fx.hcl(""),
				ExpectError: regexp.MustCompile(`(?s)quota\s+exceeded:\s+cloud\s+max_nodes\s+is\s+3.*was\s+deleted\s+again`),
			},
			clusterTestCheckGoneStep(fx),
		},
	})
}

// TestAccClusterResource_createTimeout: the create timeout bounds the wait,
// and the cluster started meanwhile is deleted.
func TestAccClusterResource_createTimeout(t *testing.T) {
	fx := newClusterTestFixture(t, "acc-cluster-timeout", 2, 0)
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			{
				// Nothing started yet when the timeout passes.
				Config:      fx.hcl("  timeouts {\n    create = \"1ms\"\n  }\n"),
				ExpectError: regexp.MustCompile(`(?s)timed\s+out\s+after\s+1ms.*was\s+deleted\s+again`),
			},
			clusterTestCheckGoneStep(fx),
			{
				// Workers whose runtime exits at once never serve, so the
				// cluster cannot get to RUNNING: the timeout passes with
				// nodes launched, and they are terminated.
				Config: strings.Replace(fx.hcl("  timeouts {\n    create = \"3s\"\n  }\n"),
					`worker_command = ["sh", "-c", "exec sleep 600"]`, `worker_command = ["sh", "-c", "exit 1"]`, 1),
				ExpectError: regexp.MustCompile(`(?s)timed\s+out\s+after\s+3s.*its\s+last\s+status\s+was\s+[A-Z]+.*was\s+deleted\s+again`),
			},
			clusterTestCheckGoneStep(fx),
		},
	})
}

// TestAccClusterResource_validation: mistakes are reported at plan time,
// on the attribute that holds them, before anything is created.
func TestAccClusterResource_validation(t *testing.T) {
	if os.Getenv(resource.EnvTfAcc) == "" {
		t.Skipf("acceptance test: set %s=1", resource.EnvTfAcc)
	}
	const (
		cloud = "cld_00000000000000000000000000"
		cc    = "cc_00000000000000000000000000"
	)
	cfg := func(body string) string {
		return clusterTestProviders() + fmt.Sprintf(`
resource "rayplane_cluster" "test" {
  name              = "bad"
  cloud_id          = %q
  compute_config_id = %q
%s
}
`, cloud, cc, body)
	}
	step := func(body, want string) resource.TestStep {
		return resource.TestStep{Config: cfg(body), PlanOnly: true, ExpectError: regexp.MustCompile(want)}
	}
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			step(`desired_state = "paused"`, `(?s)desired_state\s+value\s+must\s+be\s+one\s+of`),
			step(`runtime = { head_command = [] }`, `(?s)runtime\.head_command.*between\s+1\s+and\s+64\s+arguments`),
			step(`runtime = { worker_command = ["", "x"] }`, `(?s)runtime\.worker_command\[0\].*must\s+name\s+a\s+program`),
			step(`runtime = { env = { "1X" = "y" } }`, `(?s)runtime\.env\["1X"\].*must\s+be\s+a\s+variable\s+name`),
			step(`runtime = { image = "ray\u0000:2" }`, `(?s)runtime\.image\s+must\s+not\s+contain\s+a\s+NUL`),
			step(`runtime = { env = { X = "a\u0000b" } }`, `(?s)runtime\.env\["X"\]\s+must\s+not\s+contain\s+a\s+NUL`),
			step(`runtime = { head_command = ["sh", "\u0000"] }`, `(?s)runtime\.head_command\[1\]\s+must\s+not\s+contain\s+a\s+NUL`),
			step(`runtime = { ray_version = "latest" }`, `(?s)runtime\.ray_version.*must\s+be\s+a\s+version`),
			step(`compute_config_version = 0`, `(?s)compute_config_version\s+value\s+must\s+be\s+at\s+least\s+1`),
			step(`compute_config_version = 1.5`, `(?s)compute_config_version\s+must\s+be\s+a\s+whole\s+number,\s+got:\s+1\.5`),
			step(`resource_requests = [{ shape = { CPU = 1 }, count = 2.5 }]`, `(?s)resource_requests\[0\]\.count\s+must\s+be\s+a\s+whole\s+number,\s+got:\s+2\.5`),
			step(`resource_requests = [{ shape = { CPU = 1 }, count = 1e20 }]`, `(?s)resource_requests\[0\]\.count\s+value\s+must\s+be\s+between\s+1\s+and\s+10000,\s+got:\s+1e\+20`),
			step(`resource_requests = [{ shape = { CPU = 1 }, count = 0 }]`, `(?s)resource_requests\[0\]\.count\s+value\s+must\s+be\s+between\s+1\s+and\s+10000`),
			step(`resource_requests = [{ shape = {}, count = 1 }]`, `(?s)resource_requests\[0\]\.shape.*at\s+least\s+1`),
			step(`resource_requests = [{ shape = { CPU = 0 }, count = 1 }]`, `(?s)resource_requests\[0\]\.shape\["CPU"\].*greater\s+than\s+0`),
			step(`resource_requests = [{ shape = { "1x" = 1 }, count = 1 }]`, `(?s)resource_requests\[0\]\.shape\["1x"\].*must\s+be\s+a\s+resource\s+name`),
			step(`resource_requests = [{ shape = { CPU = 1 }, count = 1, strategy = "pack" }]`, `(?s)resource_requests\[0\]\.strategy\s+value\s+must\s+be\s+one\s+of`),
			{
				Config: strings.Replace(cfg(""), fmt.Sprintf("%q", cloud), fmt.Sprintf("%q", cc), 1), PlanOnly: true,
				ExpectError: regexp.MustCompile(`(?s)cloud_id.*must\s+be\s+a\s+cloud\s+id`),
			},
		},
	})
}

// TestAccClusterResource_erroredRetry: an update the cloud's quota cannot
// hold fails with the control plane's reason; once the quota is raised,
// the plan offers to retry the ERRORED cluster and applying it recovers.
// Another cluster holds one node of the quota of 4, so the new version's
// minimum (4 nodes) passes the plan-time check but not the control plane's.
func TestAccClusterResource_erroredRetry(t *testing.T) {
	fx := newClusterTestFixture(t, "acc-cluster-retry", 1, 4)
	fx.occupy(t)
	var id string
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             testAccCheckClusterGone(fx, &id),
		Steps: []resource.TestStep{
			{
				Config:            fx.hcl(""),
				ConfigPlanChecks:  clusterEmptyPlanAfterApply(),
				ConfigStateChecks: []statecheck.StateCheck{clusterAttr("nodes_running", knownvalue.Int64Exact(2))},
				Check:             clusterTestID(&id),
			},
			{
				// Version 2 wants 1 head + 3 workers; 3 of the quota's 4 nodes are left.
				PreConfig: func() {
					req := fx.config
					req.WorkerGroups = slices.Clone(req.WorkerGroups)
					req.WorkerGroups[0].MinNodes = 3
					if _, err := controlPlane.client.UpdateComputeConfig(context.Background(), fx.configID, req); err != nil {
						t.Fatal(err)
					}
				},
				Config:      fx.hcl("  compute_config_version = 2\n"),
				ExpectError: regexp.MustCompile(`(?s)is\s+ERRORED:\s+quota\s+exceeded`),
			},
			{
				PreConfig: func() {
					ctx := context.Background()
					cloud, err := controlPlane.client.GetCloud(ctx, fx.cloudID)
					if err != nil {
						t.Fatal(err)
					}
					five := 5
					cloud.Quotas.MaxNodes = &five
					if _, err := controlPlane.client.UpdateCloud(ctx, fx.cloudID, cloud.CloudSpec); err != nil {
						t.Fatal(err)
					}
				},
				Config: fx.hcl("  compute_config_version = 2\n"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(clusterTestAddr, plancheck.ResourceActionUpdate),
						plancheck.ExpectUnknownValue(clusterTestAddr, tfjsonpath.New("status")),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					clusterAttr("status", knownvalue.StringExact("RUNNING")),
					clusterAttr("compute_config_version", knownvalue.Int64Exact(2)),
					clusterAttr("nodes_running", knownvalue.Int64Exact(4)),
				},
			},
		},
	})
}

// clusterTestRequests is a resource_requests attribute of count bundles of
// one CPU.
func clusterTestRequests(count int) string {
	return fmt.Sprintf("  resource_requests = [{ shape = { CPU = 1 }, count = %d }]\n", count)
}

// clusterTestScaledTo waits until the cluster has nodes nodes, all running
// (the autoscaler drains idle workers above the minimum on its own time).
func clusterTestScaledTo(id *string, nodes int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		return clusterTestWait(*id, fmt.Sprintf("%d running nodes", nodes), func(c api.Cluster, err error) bool {
			return err == nil && c.NodesTotal == nodes && c.NodesRunning == nodes
		})
	}
}

// clusterTestHeld checks the requests the control plane holds for the
// cluster: want bundles of one CPU (0: none).
func clusterTestHeld(id *string, want int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		got, err := controlPlane.client.GetResourceRequests(context.Background(), *id)
		if err != nil {
			return err
		}
		switch {
		case want == 0 && len(got) != 0:
			return fmt.Errorf("want the requests withdrawn, the control plane holds %+v", got)
		case want > 0 && (len(got) != 1 || got[0].Count != want || len(got[0].Shape) != 1 || got[0].Shape["CPU"] != 1 || got[0].Strategy != ""):
			return fmt.Errorf("want %d bundles of {CPU: 1} held, the control plane holds %+v", want, got)
		}
		return nil
	}
}

// TestAccClusterResource_resourceRequests: resource_requests grows the
// cluster in place (its nodes keep running), an empty list and a removed
// attribute both withdraw, and the idle workers are then scaled down to
// the minimum. Node counts and the hourly cost follow the nodes (0.01 USD
// per hour each) without ever making the plan non-empty.
func TestAccClusterResource_resourceRequests(t *testing.T) {
	fx := newClusterTestFixture(t, "acc-cluster-req", 1, 0, func(_ *api.CloudSpec, cc *api.ComputeConfigRequest) {
		cc.WorkerIdleTimeoutSeconds = 1 // scale-down within the test
	})
	var id string
	var before []string // node ids RUNNING before the requests
	counts := func(nodes int) []statecheck.StateCheck {
		return []statecheck.StateCheck{
			clusterAttr("status", knownvalue.StringExact("RUNNING")),
			clusterAttr("nodes_running", knownvalue.Int64Exact(int64(nodes))),
			clusterAttr("nodes_total", knownvalue.Int64Exact(int64(nodes))),
			clusterAttr("hourly_cost", knownvalue.Float64Exact(float64(nodes)/100)),
		}
	}
	update := func(checks ...plancheck.PlanCheck) resource.ConfigPlanChecks {
		return resource.ConfigPlanChecks{
			PreApply: append([]plancheck.PlanCheck{
				plancheck.ExpectResourceAction(clusterTestAddr, plancheck.ResourceActionUpdate),
				plancheck.ExpectUnknownValue(clusterTestAddr, tfjsonpath.New("nodes_running")),
				plancheck.ExpectUnknownValue(clusterTestAddr, tfjsonpath.New("hourly_cost")),
			}, checks...),
			PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
		}
	}
	noRequests := clusterAttr("resource_requests", knownvalue.ListSizeExact(0))

	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             testAccCheckClusterGone(fx, &id),
		Steps: []resource.TestStep{
			{
				Config:            fx.hcl(""),
				ConfigPlanChecks:  clusterEmptyPlanAfterApply(),
				ConfigStateChecks: append(counts(2), noRequests),
				Check: resource.ComposeTestCheckFunc(
					clusterTestID(&id),
					func(*terraform.State) error {
						nodes, err := clusterTestNodes(id)
						if err != nil {
							return err
						}
						before = nil
						for _, n := range nodes {
							if n.Status == api.NodeRunning {
								before = append(before, n.ID)
							}
						}
						if len(before) != 2 {
							return fmt.Errorf("want 2 RUNNING nodes, got %+v", nodes)
						}
						return nil
					},
				),
			},
			{
				// Three bundles of one CPU need the head's CPU (as in Ray,
				// requests count every node) and two local.small workers:
				// one is added, in place.
				Config: fx.hcl(clusterTestRequests(3)),
				ConfigPlanChecks: update(plancheck.ExpectKnownValue(clusterTestAddr, tfjsonpath.New("id"),
					knownvalue.StringFunc(func(v string) error {
						if v != id {
							return fmt.Errorf("want the same cluster %s, plan has %s", id, v)
						}
						return nil
					}))),
				ConfigStateChecks: append(counts(3), clusterAttr("resource_requests", knownvalue.ListExact([]knownvalue.Check{
					knownvalue.ObjectExact(map[string]knownvalue.Check{
						"shape":    knownvalue.MapExact(map[string]knownvalue.Check{"CPU": knownvalue.Float64Exact(1)}),
						"count":    knownvalue.Int64Exact(3),
						"strategy": knownvalue.Null(),
					}),
				}))),
				Check: resource.ComposeTestCheckFunc(
					clusterTestHeld(&id, 3),
					func(*terraform.State) error {
						nodes, err := clusterTestNodes(id)
						if err != nil {
							return err
						}
						status := map[string]string{}
						for _, n := range nodes {
							status[n.ID] = n.Status
						}
						for _, n := range before {
							if status[n] != api.NodeRunning {
								return fmt.Errorf("node %s was RUNNING before the request and is %q now: nodes were restarted", n, status[n])
							}
						}
						return nil
					},
				),
			},
			{
				// An empty list withdraws; the idle workers go down to the
				// minimum outside Terraform, and the plan stays empty.
				Config:            fx.hcl("  resource_requests = []\n"),
				ConfigPlanChecks:  update(),
				ConfigStateChecks: []statecheck.StateCheck{noRequests},
				Check:             resource.ComposeTestCheckFunc(clusterTestHeld(&id, 0), clusterTestScaledTo(&id, 2)),
			},
			{
				Config:            fx.hcl(clusterTestRequests(3)),
				ConfigPlanChecks:  update(),
				ConfigStateChecks: counts(3),
				Check:             clusterTestHeld(&id, 3),
			},
			{
				// Leaving the attribute out withdraws too.
				Config: fx.hcl(""),
				ConfigPlanChecks: update(plancheck.ExpectKnownValue(clusterTestAddr, tfjsonpath.New("resource_requests"),
					knownvalue.ListSizeExact(0))),
				ConfigStateChecks: []statecheck.StateCheck{noRequests},
				Check:             resource.ComposeTestCheckFunc(clusterTestHeld(&id, 0), clusterTestScaledTo(&id, 2)),
			},
			{
				// The counts and the cost the refresh reads after the
				// scale-down are no change to apply.
				Config: fx.hcl(""),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: append(counts(2), noRequests),
			},
		},
	})
}

// TestAccClusterResource_planLimits: a cluster whose minimum (head and
// min_nodes) cannot fit the cloud's quota or the compute config's cost
// cap is refused by the apply, on the attribute that picks the version,
// before anything is created; the plan only warns (see
// TestAccClusterResource_destroyNeverCreated). Where the plan cannot know
// (a version unknown until apply, a cloud whose catalog the control plane
// cannot read) it passes.
func TestAccClusterResource_planLimits(t *testing.T) {
	// 1 head + 3 workers = 4 nodes; the cloud allows 3.
	fx := newClusterTestFixture(t, "acc-cluster-limits", 3, 3)
	capped := func(market string) func(*api.ComputeConfigRequest) {
		return func(r *api.ComputeConfigRequest) {
			r.WorkerGroups[0].MinNodes, r.WorkerGroups[0].Market = 2, market
			r.MaxHourlyCost = new(0.025)
		}
	}
	// 1 head + 2 workers fit the quota; on demand they cost 0.03 USD per
	// hour, on spot 0.01 + 2 × 0.003.
	onDemand := fx.addConfig(t, capped(api.MarketOnDemand))
	spot := fx.addConfig(t, capped(api.MarketSpot))
	preferSpot := fx.addConfig(t, capped(api.MarketPreferSpot))
	// A cloud without a driver in this control plane: its catalog answers 503.
	vcpus := 1
	aws, err := controlPlane.client.CreateCloud(context.Background(), api.CloudSpec{Name: uniqueName(fx.name + "-aws"),
		Provider: api.ProviderAWS, Region: "us-east-1", StorageLocation: "s3://rayplane-acc-bucket",
		AWS: &api.AWSCloud{RoleARN: "arn:aws:iam::123456789012:role/rayplane", SubnetIDs: []string{"subnet-0123456789abcdef0"}, ImageID: "ami-0123456789abcdef0"}, Quotas: api.Quotas{MaxVCPUs: &vcpus}})
	if err != nil {
		t.Fatalf("create cloud: %v", err)
	}
	t.Cleanup(func() {
		if err := controlPlane.client.DeleteCloud(context.Background(), aws.ID); err != nil {
			t.Logf("delete cloud %s: %v", aws.ID, err)
		}
	})

	refused := func(config string, parts ...string) []resource.TestStep {
		return []resource.TestStep{
			{Config: config, ExpectError: wordsRE(append(parts, "Nothing was created or changed")...)},
			clusterTestCheckGoneStep(fx),
		}
	}
	passes := func(config string) resource.TestStep {
		return resource.TestStep{Config: config, PlanOnly: true, ExpectNonEmptyPlan: true}
	}
	var steps []resource.TestStep
	steps = append(steps, refused(fx.hcl(""), "Cluster does not fit the cloud's quota", "compute_config_id =",
		"Attribute compute_config_id: quota exceeded: cloud max_nodes is 3 and 3 are in use",
		"head local.small, cpu 3 × local.small) is 4 nodes")...)
	steps = append(steps, refused(fx.hcl("  compute_config_version = 1\n"), "Cluster does not fit the cloud's quota", "compute_config_version = 1",
		"Attribute compute_config_version: quota exceeded", "is 4 nodes")...)
	steps = append(steps, refused(fx.hclIn(fx.cloudID, onDemand, ""), "minimum nodes exceed the cost cap",
		"Attribute compute_config_id: cost cap exceeded: max_hourly_cost is 0.025 and the cluster's nodes cost 0.02; a local.small node costs 0.01",
		"head local.small, cpu 2 × local.small) is 3 nodes, 3 vCPUs and 0.03 USD per hour")...)
	steps = append(steps,
		passes(fx.hclIn(fx.cloudID, spot, "")),
		passes(fx.hclIn(fx.cloudID, preferSpot, "  compute_config_version = 1\n")),
		// The version is known only at apply: the control plane checks then.
		passes(fx.hcl("  compute_config_version = timestamp() == \"\" ? 2 : 1\n")),
		// No catalog, so no vCPUs or prices to check.
		passes(fx.hclIn(aws.ID, onDemand, "")),
		clusterTestCheckGoneStep(fx),
	)
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             testAccCheckClusterGone(fx),
		Steps:                    steps,
	})
}
