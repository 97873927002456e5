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
}

// newClusterTestFixture skips the test without TF_ACC (as resource.Test
// would, but before anything is created), then makes a local cloud with
// fast heartbeats and maxNodes as its quota (0: none), and a compute config
// with one head and a worker group "cpu" of minWorkers..4 local.small nodes.
func newClusterTestFixture(t *testing.T, prefix string, minWorkers, maxNodes int) clusterTestFixture {
	t.Helper()
	if os.Getenv(resource.EnvTfAcc) == "" {
		t.Skipf("acceptance test: set %s=1", resource.EnvTfAcc)
	}
	testAccPreCheck(t)
	ctx := context.Background()
	fx := clusterTestFixture{name: uniqueName(prefix)}
	spec := api.CloudSpec{Name: fx.name, Provider: api.ProviderLocal,
		Heartbeat: api.HeartbeatConfig{IntervalSeconds: 1, LostAfter: 2}}
	if maxNodes > 0 {
		spec.Quotas.MaxNodes = &maxNodes
	}
	cloud, err := controlPlane.client.CreateCloud(ctx, spec)
	if err != nil {
		t.Fatalf("create cloud: %v", err)
	}
	fx.cloudID = cloud.ID
	fx.config = api.ComputeConfigRequest{Name: fx.name, ComputeConfigSpec: api.ComputeConfigSpec{
		HeadNode:     api.HeadNode{InstanceType: "local.small"},
		WorkerGroups: []api.WorkerGroup{{Name: "cpu", InstanceType: "local.small", MinNodes: minWorkers, MaxNodes: 4}},
	}}
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

// config is a cluster of the fixture whose nodes just sleep (no Ray
// needed), marked in their environment with the fixture's name. extra goes
// into the resource block.
func (fx clusterTestFixture) hcl(extra string) string {
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
`, fx.name, fx.cloudID, fx.configID, fx.name, extra)
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
// processes that were just signalled a moment to exit.
func clusterTestNoProcs(key, value string) error {
	deadline := time.Now().Add(5 * time.Second)
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
		if len(page.Items) != 0 {
			return fmt.Errorf("clusters left in cloud %s: %+v", fx.cloudID, page.Items)
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
// deletes what it started (the head was launched).
func TestAccClusterResource_createFailureCleanup(t *testing.T) {
	fx := newClusterTestFixture(t, "acc-cluster-quota", 2, 1)
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			{
				Config:      fx.hcl(""),
				ExpectError: regexp.MustCompile(`(?s)quota\s+exceeded:\s+cloud\s+max_nodes\s+is\s+1.*was\s+deleted\s+again`),
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
			step(`runtime = { ray_version = "latest" }`, `(?s)runtime\.ray_version.*must\s+be\s+a\s+version`),
			step(`compute_config_version = 0`, `(?s)compute_config_version\s+value\s+must\s+be\s+at\s+least\s+1`),
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
func TestAccClusterResource_erroredRetry(t *testing.T) {
	fx := newClusterTestFixture(t, "acc-cluster-retry", 1, 3)
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
				// Version 2 wants 1 head + 3 workers; the quota is 3 nodes.
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
