package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/gcp/gcptest"
	"github.com/rayplane/rayplane/internal/cloud/gcp/gcptest/nodes"
)

// The GCP data plane end to end: a real rayplaned that reaches the
// customer's project only through the cloud's own federated identity (its
// subject token, exchanged at the test server's STS through a workload
// identity provider trusting the control plane's published keys, then
// impersonating the customer's service account), a test server standing in
// for Compute Engine that validates every request against Google's
// discovery documents, fake-gcs-server for the logs, and a node runner that
// boots a real agent for every RUNNING instance from its startup-script.

const (
	gcpProject  = "rayplane-e2e"
	gcpProvider = "projects/123456789012/locations/global/workloadIdentityPools/rayplane/providers/control-plane"
	gcpImage    = "projects/rayplane-e2e/global/images/family/rayplane"
	gcpLogs     = "rayplane-logs-e2e"
	gcpCustomer = "rayplane-cp@rayplane-e2e.iam.gserviceaccount.com"
	gcpNodeSA   = "rayplane-node@rayplane-e2e.iam.gserviceaccount.com"
)

var gcpZones = []string{"us-central1-a", "us-central1-b", "us-central1-c"}

type gcpPlane struct {
	srv     *gcptest.Server
	gcs     *nodes.GCS
	gcsHost string
	s       *server
	runner  *nodes.Runner
	dataDir string
	flags   []string
	env     []string
	// granted is how many calls the server had answered when the last
	// cloud became active: calls before it may fail (the background
	// verifier tries a cloud before the test has granted it anything).
	granted int
}

func startGCPPlane(t *testing.T) *gcpPlane {
	t.Helper()
	srv := gcptest.Start(t, gcptest.Options{Project: gcpProject, Zones: gcpZones})
	srv.Image(gcpImage)
	srv.Network("default")
	srv.MachineType("n2-standard-2", 2, 8192, 0)
	srv.MachineType("n2-standard-4", 4, 16384, 0)
	// The nodes' service account: no permission on the project, only
	// storage (which fake-gcs-server does not check; the front records who
	// wrote).
	srv.ServiceAccount(gcpNodeSA, nil, nil)
	p := &gcpPlane{srv: srv, dataDir: t.TempDir(), flags: append([]string{"--listen", freePort(t)}, fastFlags...)}
	p.gcsHost = gcptest.StartGCS(t)
	createBucket(t, p.gcsHost, gcpLogs)
	p.gcs = nodes.StartGCS(t, srv, p.gcsHost)
	// The control plane has no Google identity of its own here: every call
	// goes through a cloud's federated identity.
	p.env = []string{"RAYPLANE_GCP_API_ENDPOINT=" + srv.URL, "GOOGLE_APPLICATION_CREDENTIALS=/nonexistent",
		"GCE_METADATA_HOST=127.0.0.1:9", "NO_GCE_CHECK=True"}
	p.s = startServerEnv(t, p.dataDir, p.env, p.flags...)
	p.runner = nodes.Start(t, srv, nodes.Options{Agent: binary, GCSEndpoint: p.gcs.URL})
	return p
}

// createBucket makes a bucket in fake-gcs-server through its JSON API.
func createBucket(t *testing.T, host, name string) {
	t.Helper()
	resp, err := http.Post("http://"+host+"/storage/v1/b?project="+gcpProject, "application/json",
		strings.NewReader(fmt.Sprintf(`{"name":%q}`, name)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("create bucket %s: %d %s", name, resp.StatusCode, b)
	}
}

// newCloud declares a gcp cloud, grants what the API renders for it (the
// custom role's permissions to the customer's service account, the
// cloud's federated principal the right to impersonate it, the provider
// trusting the control plane's keys — what examples/gcp does with the
// google provider), and verifies it.
func (p *gcpPlane) newCloud(t *testing.T, name string) api.Cloud {
	t.Helper()
	body := fmt.Sprintf(`{"name":%q,"provider":"gcp","region":"us-central1","storage_location":"gs://%s/logs",`+
		`"heartbeat":{"interval_seconds":1,"lost_after_intervals":3},`+
		`"gcp":{"service_account":%q,"workload_identity_provider":%q,"project_id":%q,"zones":[%q,%q,%q],`+
		`"image":%q,"node_service_account":%q,`+
		`"machine_types":[{"name":"n2-standard-2","price_per_hour":0.1},{"name":"n2-standard-4","price_per_hour":0.2,"spot_price_per_hour":0.05}]}}`,
		name, gcpLogs, gcpCustomer, gcpProvider, gcpProject, gcpZones[0], gcpZones[1], gcpZones[2], gcpImage, gcpNodeSA)
	c := decodeJSON[api.Cloud](t, p.s.must(t, 201, "POST", "/v1/clouds", body))
	who := decodeJSON[api.WhoAmI](t, p.s.must(t, 200, "GET", "/v1/whoami", ""))
	if c.GCP == nil || c.GCP.Subject != api.GCPSubject(who.Organization.ID, c.ID) {
		t.Fatalf("gcp cloud without its subject: %+v", c.GCP)
	}
	role := decodeJSON[api.GCPRole](t, p.s.must(t, 200, "POST", "/v1/gcp/roles", fmt.Sprintf(`{"storage_location":"gs://%s/logs"}`, gcpLogs)))
	var keys jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(role.OIDCJWKS), &keys); err != nil || len(keys.Keys) != 1 {
		t.Fatalf("oidc_jwks %q: %v", role.OIDCJWKS, err)
	}
	if !strings.HasPrefix(role.OIDCIssuer, "https://") {
		t.Fatalf("oidc_issuer %q", role.OIDCIssuer)
	}
	p.srv.WorkloadIdentityProvider(gcpProvider, role.OIDCIssuer, keys.Keys[0].Key)
	p.srv.ServiceAccount(gcpCustomer, []string{gcptest.FederatedPrincipal(gcpProvider, c.GCP.Subject)}, role.Permissions)
	c = decodeJSON[api.Cloud](t, p.s.must(t, 200, "POST", "/v1/clouds/"+c.ID+"/verify", ""))
	if c.Status != api.CloudActive {
		t.Fatalf("cloud %s after verify: %s (%s)", c.ID, c.Status, c.StatusReason)
	}
	p.granted = len(p.srv.Calls())
	return c
}

// live answers the cluster's instances that are not deleted, stopped or
// terminated.
func (p *gcpPlane) live(clusterID string) []gcptest.Instance {
	var out []gcptest.Instance
	for _, in := range p.srv.Instances() {
		if !in.Deleted && in.Labels[cloud.TagCluster] == clusterID && slices.Contains([]string{"PROVISIONING", "STAGING", "RUNNING"}, in.Status) {
			out = append(out, in)
		}
	}
	return out
}

// ever answers every instance ever inserted for the cluster.
func (p *gcpPlane) ever(clusterID string) []gcptest.Instance {
	var out []gcptest.Instance
	for _, in := range p.srv.Instances() {
		if in.Labels[cloud.TagCluster] == clusterID {
			out = append(out, in)
		}
	}
	return out
}

const gcpComputeJSON = `{"name":%q,"head_node":{"instance_type":"n2-standard-2"},` +
	`"worker_groups":[{"name":"cpu","instance_type":"n2-standard-4","market":%q,"min_nodes":%d,"max_nodes":4}],"worker_idle_timeout_seconds":3}`

func TestGCPClusterLifecycle(t *testing.T) {
	p := startGCPPlane(t)
	s := p.s
	cl := p.newCloud(t, "life")
	who := decodeJSON[api.WhoAmI](t, s.must(t, 200, "GET", "/v1/whoami", ""))

	// No capacity for the workers' type in the first zone: they go to the
	// next one; the head (another type) stays in the first.
	undo := p.srv.FailCapacity(gcptest.Fault{Zone: gcpZones[0], MachineType: "n2-standard-4"})
	cc := decodeJSON[api.ComputeConfig](t, s.must(t, 201, "POST", "/v1/compute-configs", fmt.Sprintf(gcpComputeJSON, "life", api.MarketSpot, 1)))
	c := decodeJSON[api.Cluster](t, s.must(t, 201, "POST", "/v1/clusters", fmt.Sprintf(clusterJSON, "life", cl.ID, cc.ID)))
	_, ns := s.waitFor(t, c.ID, 2*time.Minute, "RUNNING with a head and one worker", runningWith(1))
	undo()

	live := p.live(c.ID)
	if len(live) != 2 || len(ns) != 2 {
		t.Fatalf("%d instances for %d nodes (%s), want 2 and 2", len(live), len(ns), describe(ns))
	}
	byID := map[string]gcptest.Instance{}
	for _, in := range live {
		byID["zones/"+in.Zone+"/instances/"+in.Name] = in
	}
	var worker api.Node
	for _, n := range ns {
		in, ok := byID[n.InstanceID]
		if !ok {
			t.Fatalf("node %s records instance %q, which the project does not run (%v)", n.ID, n.InstanceID, keys(byID))
		}
		want := map[string]string{cloud.TagManagedBy: cloud.ManagedByValue, cloud.TagCloud: cl.ID, cloud.TagCluster: c.ID,
			cloud.TagNode: n.ID, "rayplane-organization": who.Organization.ID}
		for k, v := range want {
			if in.Labels[k] != v {
				t.Errorf("instance %s label %s = %q, want %q (labels %v)", in.Name, k, in.Labels[k], v, in.Labels)
			}
		}
		if in.ServiceAccount != gcpNodeSA || in.SourceImage != gcpImage {
			t.Errorf("instance %s runs as %q from %q, want %s from %s", in.Name, in.ServiceAccount, in.SourceImage, gcpNodeSA, gcpImage)
		}
		if len(in.Proto.GetNetworkInterfaces()) != 1 || len(in.Proto.GetNetworkInterfaces()[0].GetAccessConfigs()) != 0 {
			t.Errorf("instance %s network interfaces %v, want one without an external address", in.Name, in.Proto.GetNetworkInterfaces())
		}
		wantType, wantZone, wantSpot := "n2-standard-4", gcpZones[1], true
		if n.Head {
			wantType, wantZone, wantSpot = "n2-standard-2", gcpZones[0], false
		} else {
			worker = n
		}
		if in.MachineType != wantType || in.Zone != wantZone || in.Spot != wantSpot {
			t.Errorf("instance %s is %s in %s (spot %v), want %s in %s (spot %v)", in.Name, in.MachineType, in.Zone, in.Spot, wantType, wantZone, wantSpot)
		}
	}
	if booted := p.runner.Booted(); len(booted) != 2 {
		t.Errorf("agents booted for %q, want the 2 instances", booted)
	}

	// A Spot VM preempted (and deleted, its termination action) is a LOST
	// node, replaced.
	p.srv.Preempt(byID[worker.InstanceID].Name)
	_, _ = s.waitFor(t, c.ID, 2*time.Minute, "the preempted worker LOST and replaced", func(c api.Cluster, ns []api.Node) bool {
		for _, n := range ns {
			if n.ID == worker.ID && n.Status != api.NodeLost && n.Status != api.NodeTerminated {
				return false
			}
		}
		return runningWith(1)(c, ns)
	})
	waitUntil(t, time.Minute, "two live instances after the replacement", func() bool { return len(p.live(c.ID)) == 2 })

	// Scale by resource requests: 3 bundles of 4 CPUs; the worker holds
	// one, the head (2 CPUs) none: two more workers.
	s.must(t, 200, "POST", "/v1/clusters/"+c.ID+"/resource-requests", `{"bundles":[{"shape":{"CPU":4},"count":3}]}`)
	s.waitFor(t, c.ID, 2*time.Minute, "RUNNING with three workers", runningWith(3))
	if n := len(p.live(c.ID)); n != 4 {
		t.Fatalf("%d live instances after scaling up, want 4", n)
	}

	// The runtime logs are in the customer's bucket, written with the
	// node's service account, never the control plane's identity.
	p.waitForLogs(t, c.ID, "joins")

	// Withdraw the requests: the extra workers idle out, are drained and
	// deleted through the driver.
	s.must(t, 200, "POST", "/v1/clusters/"+c.ID+"/resource-requests", `{"bundles":[]}`)
	s.waitFor(t, c.ID, 2*time.Minute, "back to one worker", func(c api.Cluster, ns []api.Node) bool {
		return runningWith(1)(c, ns) && len(byStatus(ns, api.NodeDraining))+len(byStatus(ns, api.NodeTerminating)) == 0
	})
	waitUntil(t, time.Minute, "the idle workers' instances deleted", func() bool { return len(p.live(c.ID)) == 2 })

	// Delete: every instance deleted, nothing of the cluster left.
	s.must(t, 202, "DELETE", "/v1/clusters/"+c.ID, "")
	waitUntil(t, 2*time.Minute, "the cluster deleted", func() bool {
		status, _, _ := s.call("GET", "/v1/clusters/"+c.ID, "")
		return status == 404
	})
	if left := p.live(c.ID); len(left) != 0 {
		t.Fatalf("instances left after delete: %d", len(left))
	}
	waitUntil(t, time.Minute, "every agent stopped", func() bool { return len(p.runner.Running()) == 0 })

	p.checkCalls(t, cl)
	if strings.Contains(s.stderr.String(), "rpb_") {
		t.Error("a bootstrap token reached the control plane's log")
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// waitForLogs waits until the bucket holds a runtime log piece of the
// cluster containing want, and checks who wrote the pieces.
func (p *gcpPlane) waitForLogs(t *testing.T, clusterID, want string) {
	t.Helper()
	prefix := "logs/" + clusterID + "/"
	waitUntil(t, 2*time.Minute, "a runtime log with "+want+" under gs://"+gcpLogs+"/"+prefix, func() bool {
		for _, name := range listObjects(t, p.gcsHost, gcpLogs, prefix) {
			if !strings.Contains(name, "/runtime/") {
				t.Fatalf("object %s is not a runtime log piece", name)
			}
			if bytes.Contains(readObject(t, p.gcsHost, gcpLogs, name), []byte(want)) {
				return true
			}
		}
		return false
	})
	writes := p.gcs.Writes()
	if len(writes) == 0 {
		t.Fatal("no upload through the storage front")
	}
	for _, w := range writes {
		if w.Principal != gcpNodeSA || w.Bucket != gcpLogs {
			t.Errorf("%s/%s written by %q, want the node's service account %s", w.Bucket, w.Object, w.Principal, gcpNodeSA)
		}
	}
}

func listObjects(t *testing.T, host, bucket, prefix string) []string {
	t.Helper()
	resp, err := http.Get("http://" + host + "/storage/v1/b/" + bucket + "/o?prefix=" + prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Items []struct {
			Name string `json:"name"`
		} `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("list objects: %v", err)
	}
	var names []string
	for _, it := range out.Items {
		names = append(names, it.Name)
	}
	return names
}

func readObject(t *testing.T, host, bucket, name string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + host + "/storage/v1/b/" + bucket + "/o/" + strings.ReplaceAll(name, "/", "%2F") + "?alt=media")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// checkCalls: in the customer's project the control plane acts only as the
// impersonated service account, which only the cloud's federated identity
// impersonated; once granted, every call succeeded (capacity faults end
// the insert's operation, not the call).
func (p *gcpPlane) checkCalls(t *testing.T, cl api.Cloud) {
	t.Helper()
	federated := gcptest.FederatedPrincipal(gcpProvider, cl.GCP.Subject)
	var compute, impersonations, exchanges int
	for i, c := range p.srv.Calls() {
		switch {
		case c.Method == "sts.token":
			exchanges++
		case strings.HasPrefix(c.Method, "iamcredentials."):
			impersonations++
			if c.Principal != federated {
				t.Errorf("%s by %q, want the cloud's federated principal %s", c.Method, c.Principal, federated)
			}
		case strings.HasPrefix(c.Method, "compute.") || strings.HasPrefix(c.Method, "cloudresourcemanager."):
			compute++
			if c.Principal != gcpCustomer {
				t.Errorf("%s by %q, want the impersonated %s", c.Method, c.Principal, gcpCustomer)
			}
		}
		if i >= p.granted && c.Status >= 400 && c.Status != 404 {
			t.Errorf("%s %s answered %d after the grants", c.Method, c.Path, c.Status)
		}
	}
	if exchanges == 0 || impersonations == 0 || compute == 0 {
		t.Errorf("calls: %d STS exchanges, %d impersonations, %d compute; want each", exchanges, impersonations, compute)
	}
}

// TestGCPCrashBetweenInsertAndRecord: rayplaned is killed after Compute
// Engine made an instance and before the insert's answer reached it. After
// a restart the cluster has exactly the planned instance: the driver finds
// it by its labels (or its insert's requestId answers the same operation)
// instead of making another, and nothing is orphaned.
func TestGCPCrashBetweenInsertAndRecord(t *testing.T) {
	p := startGCPPlane(t)
	cl := p.newCloud(t, "crash")
	release := p.srv.HoldInserts()
	cc := decodeJSON[api.ComputeConfig](t, p.s.must(t, 201, "POST", "/v1/compute-configs", fmt.Sprintf(gcpComputeJSON, "crash", api.MarketOnDemand, 0)))
	c := decodeJSON[api.Cluster](t, p.s.must(t, 201, "POST", "/v1/clusters", fmt.Sprintf(clusterJSON, "crash", cl.ID, cc.ID)))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.srv.WaitInstances(ctx, func([]gcptest.Instance) bool { return len(p.ever(c.ID)) == 1 }); err != nil {
		t.Fatalf("no insert reached the server: %v", err)
	}
	if err := p.s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.s.exited
	p.s.exited <- nil
	release() // the held answer goes to a dead connection

	s2 := startServerEnv(t, p.dataDir, p.env, p.flags...)
	_, ns := s2.waitFor(t, c.ID, 2*time.Minute, "RUNNING after the restart", runningWith(0))
	s2.afterPasses(t, c.ID, 3)
	ns = s2.nodes(t, c.ID)
	all := p.ever(c.ID)
	if len(all) != 1 || len(ns) != 1 || ns[0].InstanceID != "zones/"+all[0].Zone+"/instances/"+all[0].Name {
		var names []string
		for _, in := range all {
			names = append(names, in.Zone+"/"+in.Name+"/"+in.Status)
		}
		t.Fatalf("instances ever inserted %q for nodes %s: want exactly the one made before the kill", names, describe(ns))
	}
	s2.must(t, 202, "DELETE", "/v1/clusters/"+c.ID, "")
	waitUntil(t, 2*time.Minute, "no instance left", func() bool { return len(p.live(c.ID)) == 0 })
}
