package gcp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/credentials"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/gcp/gcprole"
	"github.com/rayplane/rayplane/internal/cloud/gcp/gcptest"
)

const (
	testProject  = "proj-test-1"
	testRegion   = "us-central1"
	controlPlane = "rayplaned@rayplane-prod.iam.gserviceaccount.com"
	customerSA   = "rayplane@proj-test-1.iam.gserviceaccount.com"
	nodeSA       = "rayplane-nodes@proj-test-1.iam.gserviceaccount.com"
	testImage    = "projects/proj-test-1/global/images/rayplane-node"
)

var testZones = []string{"us-central1-a", "us-central1-b", "us-central1-c"}

// Every test has its own server (a loopback listener; the discovery
// documents are read once), so faults and calls of one never meet
// another's. Their calls are gathered for the role tests at the end.
func TestAgainstServer(t *testing.T) {
	e := &env{}
	t.Run("group", func(t *testing.T) {
		t.Run("LaunchShape", e.testLaunchShape)
		t.Run("LaunchIsIdempotent", e.testLaunchIsIdempotent)
		t.Run("ConcurrentLaunchesOfOneNode", e.testConcurrentLaunches)
		t.Run("HeldInsertAcrossARestart", e.testHeldInsert)
		t.Run("ListFiltersAndPaginates", e.testListFiltersAndPaginates)
		t.Run("Terminate", e.testTerminate)
		t.Run("EndedInstanceIsReplaced", e.testEndedInstance)
		t.Run("ZoneFailover", e.testZoneFailover)
		t.Run("PreferSpot", e.testPreferSpot)
		t.Run("Spot", e.testSpot)
		t.Run("GPUs", e.testGPUs)
		t.Run("FailedOperationIsRetried", e.testFailedOperationIsRetried)
		t.Run("TerminateOnlyOurs", e.testTerminateOnlyOurs)
		t.Run("InstanceTypesAreCached", e.testInstanceTypesAreCached)
		t.Run("VerifyWithoutNodeServiceAccount", e.testVerifyWithoutNodeServiceAccount)
		t.Run("ErrorKinds", e.testErrorKinds)
		t.Run("InstanceTypes", e.testInstanceTypes)
		t.Run("VerifyGood", e.testVerifyGood)
		t.Run("VerifyNotATokenCreator", e.testVerifyNotATokenCreator)
		t.Run("VerifyMissingPermissions", e.testVerifyMissingPermissions)
		t.Run("VerifyMissingResources", e.testVerifyMissingResources)
		t.Run("WorkloadIdentityFederation", e.testWorkloadIdentity)
		t.Run("EveryPermissionIsNeeded", e.testEveryPermissionIsNeeded)
	})
	if t.Failed() {
		return
	}
	t.Run("CallsAreInTheRole", e.testCallsAreInTheRole)
}

type env struct {
	mu    sync.Mutex
	calls []gcptest.Call
}

// fixture is one cloud in its own server: the control plane's key, the
// customer's service account with gcprole's permissions, the node service
// account, an image, the default network with a subnetwork, machine types.
type fixture struct {
	s    *gcptest.Server
	cfg  Config
	d    *Driver
	now  *clock
	logs *syncBuffer
	key  string // the control plane's key file
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func randomID(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func (e *env) fixture(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	return e.fixtureOf(t, gcptest.Options{Project: testProject, Region: testRegion, Zones: testZones}, mutate)
}

func (e *env) fixtureOf(t *testing.T, opts gcptest.Options, mutate func(*Config)) *fixture {
	t.Helper()
	s := gcptest.Start(t, opts)
	t.Cleanup(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.calls = append(e.calls, s.Calls()...)
	})
	f := &fixture{s: s, now: &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}, logs: &syncBuffer{}}
	f.key = s.ControlPlaneKey(t, controlPlane)
	s.ServiceAccount(customerSA, []string{"serviceAccount:" + controlPlane}, gcprole.Permissions())
	s.ServiceAccount(nodeSA, nil, nil)
	s.Image(testImage)
	s.Network("default")
	s.Subnetwork(testRegion, "nodes")
	s.MachineType("n2-standard-4", 4, 16384, 0)
	s.MachineType("g2-standard-8", 8, 32768, 1)
	f.cfg = Config{
		OrgID: "org_" + randomID(t), CloudID: "cld_" + randomID(t), Region: testRegion,
		Cloud: api.GCPCloud{
			ServiceAccount: customerSA, ProjectID: testProject, Zones: testZones,
			Subnetwork: "nodes", Image: testImage, NodeServiceAccount: nodeSA,
			MachineTypes: []api.GCPMachineType{
				{Name: "n2-standard-4", PricePerHour: 0.194, SpotPricePerHour: 0.047},
				{Name: "g2-standard-8", PricePerHour: 0.85},
			},
		},
		StorageLocation:  "gs://rayplane-logs/prefix",
		Endpoint:         s.URL,
		BaseCredentials:  keyCredentials(t, f.key),
		SpotRetryAfter:   10 * time.Minute,
		Now:              f.now.Now,
		Logger:           slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		SubjectTokenFile: "",
	}
	if mutate != nil {
		mutate(&f.cfg)
	}
	f.d = f.newDriver(t, f.cfg)
	return f
}

func (f *fixture) newDriver(t *testing.T, cfg Config) *Driver {
	t.Helper()
	d, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	d.pollEvery = 10 * time.Millisecond
	d.retryInitial = time.Millisecond
	return d
}

// keyCredentials are the control plane's own credentials from a key file.
func keyCredentials(t *testing.T, file string) *auth.Credentials {
	t.Helper()
	creds, err := credentials.DetectDefault(&credentials.DetectOptions{
		CredentialsFile: file, Scopes: []string{scopeCloudPlatform},
	})
	if err != nil {
		t.Fatalf("key credentials: %v", err)
	}
	return creds
}

// request is a launch of node in cluster, its bootstrap holding a token
// that must appear nowhere but in the startup-script.
func (f *fixture) request(t *testing.T, cluster, node, market string) (cloud.LaunchRequest, string) {
	token := "rpb_" + randomID(t)
	b, err := json.Marshal(api.AgentBootstrap{ControlPlaneURL: "https://cp.example", ClusterID: cluster, NodeID: node, BootstrapToken: token})
	if err != nil {
		t.Fatal(err)
	}
	return cloud.LaunchRequest{
		NodeID: node, InstanceType: "n2-standard-4", Market: market,
		Tags: map[string]string{
			cloud.TagManagedBy: cloud.ManagedByValue, cloud.TagCloud: f.cfg.CloudID, cloud.TagCluster: cluster,
			cloud.TagNode: node, cloud.TagGroup: "workers",
		},
		Bootstrap: b, IdempotencyKey: node,
	}, token
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// instances answers the server's instances of node (deleted ones too).
func (f *fixture) instances(node string) []gcptest.Instance {
	var out []gcptest.Instance
	for _, i := range f.s.Instances() {
		if i.Labels[cloud.TagNode] == node {
			out = append(out, i)
		}
	}
	return out
}

func (f *fixture) instance(t *testing.T, id string) gcptest.Instance {
	t.Helper()
	zone, name, err := parseInstanceID(id)
	if err != nil {
		t.Fatal(err)
	}
	var found []gcptest.Instance
	for _, i := range f.s.Instances() {
		if i.Zone == zone && i.Name == name && !i.Deleted {
			found = append(found, i)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d live instances %s", len(found), id)
	}
	return found[0]
}

// calls counts the server's calls of method by the customer's account
// that match.
func (f *fixture) calls(method string, match func(gcptest.Call) bool) int {
	n := 0
	for _, c := range f.s.Calls() {
		if c.Method == method && (match == nil || match(c)) {
			n++
		}
	}
	return n
}

// eventually waits until cond holds, polling; it fails the test after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (e *env) testLaunchShape(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, nil)
	req, token := f.request(t, "cls_a", "nod_a", api.MarketOnDemand)
	inst, err := f.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	if inst.ID != "zones/us-central1-a/instances/rp-nod-a" || inst.NodeID != "nod_a" || inst.InstanceType != "n2-standard-4" ||
		inst.Address == "" || inst.State != cloud.InstanceRunning {
		t.Fatalf("Launch = %+v", inst)
	}
	got := f.instance(t, inst.ID)
	if got.NetworkIP != inst.Address {
		t.Errorf("address %q, instance's %q", inst.Address, got.NetworkIP)
	}
	want := map[string]string{
		cloud.TagManagedBy: cloud.ManagedByValue, cloud.TagCloud: f.cfg.CloudID, cloud.TagCluster: "cls_a",
		cloud.TagNode: "nod_a", cloud.TagGroup: "workers", TagOrganization: f.cfg.OrgID,
	}
	if fmt.Sprint(got.Labels) != fmt.Sprint(want) {
		t.Errorf("labels %v, want %v", got.Labels, want)
	}
	if got.SourceImage != testImage || got.MachineType != "n2-standard-4" || got.Spot || got.Scheduling.GetProvisioningModel() == "SPOT" {
		t.Errorf("image %q type %q spot %t", got.SourceImage, got.MachineType, got.Spot)
	}
	if got.ServiceAccount != nodeSA || !slices.Equal(got.Scopes, []string{scopeStorageReadWrite}) {
		t.Errorf("service account %q scopes %v", got.ServiceAccount, got.Scopes)
	}
	if !strings.HasSuffix(got.Subnetwork, "/regions/"+testRegion+"/subnetworks/nodes") || !strings.HasSuffix(got.Network, "/global/networks/default") {
		t.Errorf("network %q subnetwork %q", got.Network, got.Subnetwork)
	}
	for _, nic := range got.Proto.GetNetworkInterfaces() {
		if len(nic.GetAccessConfigs()) != 0 {
			t.Errorf("the node has an external IP: %v", nic.GetAccessConfigs())
		}
	}
	if !uuidPattern.MatchString(got.RequestID) || got.RequestID != requestID("nod_a", "us-central1-a", api.MarketOnDemand, 0) {
		t.Errorf("requestId %q", got.RequestID)
	}
	if disks := got.Proto.GetDisks(); len(disks) != 1 || !disks[0].GetAutoDelete() || !disks[0].GetBoot() {
		t.Errorf("disks %v", disks)
	}
	// The startup-script is the boot script, and the bootstrap comes back out of it.
	payload, err := ParseBootstrap(got.Proto)
	if err != nil || !bytes.Equal(payload, req.Bootstrap) {
		t.Fatalf("ParseBootstrap = %q, %v; want %q", payload, err, req.Bootstrap)
	}
	if len(got.Metadata) != 1 {
		t.Errorf("metadata %v, want the startup-script only", slices.Sorted(mapsKeys(got.Metadata)))
	}
	if strings.Contains(f.logs.String(), token) {
		t.Errorf("the bootstrap token is in the log:\n%s", f.logs.String())
	}
	// Without a node service account or subnetwork: none, and the network.
	g := e.fixture(t, func(c *Config) { c.Cloud.NodeServiceAccount, c.Cloud.Subnetwork = "", "" })
	req, _ = g.request(t, "cls_a", "nod_b", api.MarketOnDemand)
	inst, err = g.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	// (GCE picks the auto-mode network's subnetwork of the region.)
	if got := g.instance(t, inst.ID); got.ServiceAccount != "" || strings.HasSuffix(got.Subnetwork, "/nodes") || !strings.HasSuffix(got.Network, "/global/networks/default") {
		t.Errorf("service account %q network %q subnetwork %q", got.ServiceAccount, got.Network, got.Subnetwork)
	}
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (e *env) testLaunchIsIdempotent(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, nil)
	req, _ := f.request(t, "cls_i", "nod_i", api.MarketOnDemand)
	first, err := f.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	// The same intent again, and from a new Driver, as after a restart.
	again, err := f.d.Launch(ctxT(t), req)
	if err != nil || again.ID != first.ID {
		t.Fatalf("second Launch = %v, %v; want %s", again.ID, err, first.ID)
	}
	req2, _ := f.request(t, "cls_i", "nod_i", api.MarketOnDemand) // a new token, as a retried launch may have
	second, err := f.newDriver(t, f.cfg).Launch(ctxT(t), req2)
	if err != nil || second.ID != first.ID {
		t.Fatalf("Launch by a new Driver = %v, %v; want %s", second.ID, err, first.ID)
	}
	if n := len(f.instances("nod_i")); n != 1 {
		t.Fatalf("%d instances for one node, want 1", n)
	}
}

func (e *env) testConcurrentLaunches(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, nil)
	req, _ := f.request(t, "cls_c", "nod_c", api.MarketOnDemand)
	other := f.newDriver(t, f.cfg) // a second control plane on the same cloud
	var wg sync.WaitGroup
	ids := make([]string, 6)
	errs := make([]error, 6)
	for i := range ids {
		d := f.d
		if i%2 == 1 {
			d = other
		}
		wg.Go(func() {
			inst, err := d.Launch(ctxT(t), req)
			ids[i], errs[i] = inst.ID, err
		})
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("launches answered %v, %v", ids, errs)
		}
	}
	if n := len(f.instances("nod_c")); n != 1 {
		t.Fatalf("%d instances for one node, want 1", n)
	}
}

// testHeldInsert: the control plane dies while an insert's answer is on
// its way (the instance exists); the restarted one launches the node
// again and gets that instance, not a second one. With the lookup not
// seeing it (a lost race), the insert's request id does the same.
func (e *env) testHeldInsert(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, nil)
	release := f.s.HoldInserts()
	defer release()
	req, _ := f.request(t, "cls_h", "nod_h", api.MarketOnDemand)
	ctx, crash := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := f.d.Launch(ctx, req)
		done <- err
	}()
	eventually(t, "the held insert's instance", func() bool { return len(f.instances("nod_h")) == 1 })
	crash()
	if err := <-done; err == nil || cloud.KindOf(err) != cloud.Transient {
		t.Fatalf("the crashed Launch = %v, want a transient error", err)
	}
	release()
	restarted := f.newDriver(t, f.cfg)
	inst, err := restarted.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("Launch after the restart: %v", err)
	}
	if all := f.instances("nod_h"); len(all) != 1 || inst.ID != instanceID(all[0].Zone, all[0].Name) {
		t.Fatalf("Launch after the restart = %s; instances %+v", inst.ID, all)
	}

	// The insert itself, retried with its request id while the first is
	// held, makes no second instance either.
	release2 := f.s.HoldInserts()
	defer release2()
	req2, _ := f.request(t, "cls_h", "nod_h2", api.MarketOnDemand)
	ctx2, crash2 := context.WithCancel(context.Background())
	go func() {
		_, err := f.d.Launch(ctx2, req2)
		done <- err
	}()
	eventually(t, "the second held insert's instance", func() bool { return len(f.instances("nod_h2")) == 1 })
	crash2()
	<-done
	release2()
	c, err := restarted.clients(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	labels, _ := restarted.nodeLabels(req2)
	got, err := restarted.insert(ctxT(t), c, req2, InstanceName("nod_h2"), labels, "#!/bin/sh\n", testZones[0], api.MarketOnDemand, false)
	if err != nil || len(f.instances("nod_h2")) != 1 || got.NodeID != "nod_h2" {
		t.Fatalf("insert retried with its request id = %+v, %v; %d instances", got, err, len(f.instances("nod_h2")))
	}
}

func (e *env) testListFiltersAndPaginates(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, nil)
	f.d.pageSize = 2
	const n = 5
	var want []string
	for i := range n {
		req, _ := f.request(t, "cls_l", fmt.Sprintf("nod_l%d", i), api.MarketOnDemand)
		inst, err := f.d.Launch(ctxT(t), req)
		if err != nil {
			t.Fatalf("Launch: %v", err)
		}
		want = append(want, inst.ID)
	}
	other, _ := f.request(t, "cls_other", "nod_other", api.MarketOnDemand)
	if _, err := f.d.Launch(ctxT(t), other); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	before := f.calls("compute.instances.aggregatedList", nil)
	got, err := f.d.List(ctxT(t), map[string]string{cloud.TagCloud: f.cfg.CloudID, cloud.TagCluster: "cls_l"})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if pages := f.calls("compute.instances.aggregatedList", nil) - before; pages < 3 {
		t.Errorf("List of %d instances with pages of 2 made %d aggregatedList calls", n, pages)
	}
	var ids []string
	for _, inst := range got {
		ids = append(ids, inst.ID)
		if inst.Tags[cloud.TagCluster] != "cls_l" || inst.NodeID == "" || inst.Address == "" || inst.State != cloud.InstanceRunning {
			t.Errorf("List answered %+v", inst)
		}
	}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("List = %v, want %v", ids, want)
	}
	if all, err := f.d.List(ctxT(t), map[string]string{cloud.TagCloud: f.cfg.CloudID}); err != nil || len(all) != n+1 {
		t.Fatalf("List of the cloud = %d instances, %v; want %d", len(all), err, n+1)
	}
	if none, err := f.d.List(ctxT(t), map[string]string{cloud.TagCloud: "cld_nobody"}); err != nil || len(none) != 0 {
		t.Fatalf("List of another cloud = %v, %v", none, err)
	}
	// Provisioning is pending.
	f.s.SetStatus(InstanceName("nod_l0"), "STAGING")
	got, err = f.d.List(ctxT(t), map[string]string{cloud.TagNode: "nod_l0"})
	if err != nil || len(got) != 1 || got[0].State != cloud.InstancePending {
		t.Fatalf("List of a staging instance = %+v, %v", got, err)
	}
}

func (e *env) testTerminate(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, nil)
	req, _ := f.request(t, "cls_t", "nod_t", api.MarketOnDemand)
	inst, err := f.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	tags := map[string]string{cloud.TagCloud: f.cfg.CloudID}
	if err := f.d.Terminate(ctxT(t), inst.ID); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	if got, err := f.d.List(ctxT(t), tags); err != nil || len(got) != 0 {
		t.Fatalf("List after Terminate = %v, %v", got, err)
	}
	if all := f.instances("nod_t"); len(all) != 1 || !all[0].Deleted {
		t.Fatalf("instances after Terminate: %+v", all)
	}
	if err := f.d.Terminate(ctxT(t), inst.ID); err != nil {
		t.Fatalf("second Terminate: %v", err)
	}
	if err := f.d.Terminate(ctxT(t), "zones/us-central1-b/instances/rp-nobody"); err != nil {
		t.Fatalf("Terminate of an unknown instance: %v", err)
	}
	if err := f.d.Terminate(ctxT(t), "i-0123456789abcdef0"); cloud.KindOf(err) != cloud.Invalid {
		t.Fatalf("Terminate of a malformed id = %v", err)
	}
}

// testEndedInstance: a node's instance that powered itself off is
// TERMINATED, not gone. List does not list it and deletes it; a Launch of
// the same node (its record lost) deletes it and inserts anew instead of
// answering it.
func (e *env) testEndedInstance(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, nil)
	req, _ := f.request(t, "cls_e", "nod_e", api.MarketOnDemand)
	first, err := f.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	f.s.SetStatus(InstanceName("nod_e"), "TERMINATED")
	second, err := f.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("Launch after the instance ended: %v", err)
	}
	all := f.instances("nod_e")
	if len(all) != 2 || !all[0].Deleted || all[1].Deleted || all[1].Status != "RUNNING" || second.ID != first.ID ||
		all[1].RequestID != requestID("nod_e", testZones[0], api.MarketOnDemand, 1) {
		t.Fatalf("instances after the relaunch: %+v", all)
	}
	// List: not listed, deleted.
	f.s.SetStatus(InstanceName("nod_e"), "TERMINATED")
	if got, err := f.d.List(ctxT(t), map[string]string{cloud.TagCloud: f.cfg.CloudID}); err != nil || len(got) != 0 {
		t.Fatalf("List with an ended instance = %+v, %v", got, err)
	}
	if all := f.instances("nod_e"); !all[1].Deleted {
		t.Fatalf("List did not delete the ended instance: %+v", all[1])
	}
}

func (e *env) testZoneFailover(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, nil)
	undoA := f.s.FailCapacity(gcptest.Fault{Zone: testZones[0]})
	req, _ := f.request(t, "cls_f", "nod_f", api.MarketOnDemand)
	inst, err := f.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("Launch with no capacity in the first zone: %v", err)
	}
	if got := f.instance(t, inst.ID); got.Zone != testZones[1] {
		t.Fatalf("launched in %s, want the second zone", got.Zone)
	}
	if n := f.calls("compute.instances.insert", nil); n != 2 {
		t.Errorf("%d inserts, want 2 (no retry in the same zone)", n)
	}
	undoB := f.s.FailCapacity(gcptest.Fault{Zone: testZones[1]})
	undoC := f.s.FailCapacity(gcptest.Fault{Zone: testZones[2]})
	defer undoA()
	defer undoB()
	defer undoC()
	req2, _ := f.request(t, "cls_f", "nod_f2", api.MarketOnDemand)
	_, err = f.d.Launch(ctxT(t), req2)
	if cloud.KindOf(err) != cloud.Capacity {
		t.Fatalf("Launch with no capacity anywhere = %v, want a capacity error", err)
	}
	for _, z := range testZones {
		if !strings.Contains(err.Error(), z) {
			t.Errorf("error does not name zone %s: %v", z, err)
		}
	}
	for _, i := range f.instances("nod_f2") {
		if !i.Deleted && i.Status != "TERMINATED" {
			t.Errorf("a failed insert left %+v", i)
		}
	}
}

func (e *env) testPreferSpot(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, nil)
	spot := true
	undo := f.s.FailCapacity(gcptest.Fault{Spot: &spot})
	launch := func(node string) gcptest.Instance {
		t.Helper()
		req, _ := f.request(t, "cls_p", node, api.MarketPreferSpot)
		inst, err := f.d.Launch(ctxT(t), req)
		if err != nil {
			t.Fatalf("Launch %s: %v", node, err)
		}
		return f.instance(t, inst.ID)
	}
	// No spot capacity in any zone: standard, in the first zone.
	if got := launch("nod_p1"); got.Spot || got.Zone != testZones[0] {
		t.Fatalf("fallback launched spot %t in %s, want standard in %s", got.Spot, got.Zone, testZones[0])
	}
	if n := f.calls("compute.instances.insert", nil); n != len(testZones)+1 {
		t.Fatalf("%d inserts, want one spot per zone and one standard", n)
	}
	undo()
	// Spot has capacity again, but within SpotRetryAfter prefer_spot stays
	// standard without trying it.
	f.now.Add(9 * time.Minute)
	before := f.calls("compute.instances.insert", nil)
	if got := launch("nod_p2"); got.Spot {
		t.Fatal("within SpotRetryAfter prefer_spot launched spot")
	}
	if n := f.calls("compute.instances.insert", nil) - before; n != 1 {
		t.Fatalf("within SpotRetryAfter a launch made %d inserts, want 1", n)
	}
	f.now.Add(2 * time.Minute)
	if got := launch("nod_p3"); !got.Spot {
		t.Fatal("after SpotRetryAfter prefer_spot launched standard")
	}
	if !strings.Contains(f.logs.String(), "no capacity") {
		t.Errorf("the fallback is not logged:\n%s", f.logs.String())
	}
	// A spot quota is the region's: one spot attempt, then standard.
	undoQ := f.s.FailQuota(gcptest.Fault{Spot: &spot})
	defer undoQ()
	before = f.calls("compute.instances.insert", nil)
	if got := launch("nod_p4"); got.Spot {
		t.Fatal("prefer_spot launched spot over its quota")
	}
	if n := f.calls("compute.instances.insert", nil) - before; n != 2 {
		t.Fatalf("prefer_spot over the spot quota made %d inserts, want 2", n)
	}
}

func (e *env) testSpot(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, nil)
	req, _ := f.request(t, "cls_s", "nod_s", api.MarketSpot)
	inst, err := f.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	got := f.instance(t, inst.ID)
	sc := got.Scheduling
	if !got.Spot || sc.GetProvisioningModel() != "SPOT" || sc.GetInstanceTerminationAction() != "DELETE" ||
		sc.GetAutomaticRestart() || sc.GetOnHostMaintenance() != "TERMINATE" {
		t.Fatalf("spot scheduling %v", sc)
	}
	tags := map[string]string{cloud.TagCluster: "cls_s"}
	if l, err := f.d.List(ctxT(t), tags); err != nil || len(l) != 1 {
		t.Fatalf("List = %v, %v", l, err)
	}
	// Preempted: deleted by GCE, not listed: the node is lost.
	f.s.Preempt(got.Name)
	if l, err := f.d.List(ctxT(t), tags); err != nil || len(l) != 0 {
		t.Fatalf("List after preemption = %v, %v", l, err)
	}
	// spot never falls back to standard.
	spot := true
	defer f.s.FailCapacity(gcptest.Fault{Spot: &spot})()
	req2, _ := f.request(t, "cls_s", "nod_s2", api.MarketSpot)
	if _, err := f.d.Launch(ctxT(t), req2); cloud.KindOf(err) != cloud.Capacity {
		t.Fatalf("spot Launch without spot capacity = %v, want a capacity error", err)
	}
	for _, i := range f.instances("nod_s2") {
		if !i.Deleted && i.Status != "TERMINATED" {
			t.Fatalf("spot Launch without capacity left %+v", i)
		}
	}
}

func (e *env) testErrorKinds(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, nil)
	check := func(name string, err error, want cloud.Kind, token string) {
		t.Helper()
		if err == nil || cloud.KindOf(err) != want {
			t.Errorf("%s: %v, want a %s error", name, err, want)
			return
		}
		if token != "" && strings.Contains(err.Error(), token) {
			t.Errorf("%s: the error holds the bootstrap token: %v", name, err)
		}
	}
	launch := func(node string) (error, string) {
		req, token := f.request(t, "cls_k", node, api.MarketOnDemand)
		_, err := f.d.Launch(ctxT(t), req)
		return err, token
	}

	undo := f.s.FailQuota(gcptest.Fault{})
	err, tok := launch("nod_k1")
	undo()
	check("quota", err, cloud.Quota, tok)
	if f.calls("compute.instances.insert", nil) != 1 {
		t.Errorf("a quota error was tried in another zone")
	}
	for i, w := range []struct {
		status int
		kind   cloud.Kind
	}{{403, cloud.Auth}, {429, cloud.Transient}, {500, cloud.Transient}, {503, cloud.Transient}, {400, cloud.Invalid}} {
		undo := f.s.FailRequests("compute.instances.insert", w.status, -1)
		err, tok := launch(fmt.Sprintf("nod_k%d", i+2))
		undo()
		check(fmt.Sprintf("HTTP %d", w.status), err, w.kind, tok)
	}
	undo = f.s.FailRequests("compute.instances.aggregatedList", 403, -1)
	_, err = f.d.List(ctxT(t), nil)
	undo()
	check("list 403", err, cloud.Auth, "")

	// A service account the control plane may not impersonate: every call
	// is an auth error.
	g := e.fixture(t, nil)
	g.s.ServiceAccount(customerSA, nil, gcprole.Permissions())
	req, tok := g.request(t, "cls_k", "nod_kx", api.MarketOnDemand)
	_, err = g.d.Launch(ctxT(t), req)
	check("not a token creator at Launch", err, cloud.Auth, tok)
	_, err = g.d.List(ctxT(t), nil)
	check("not a token creator at List", err, cloud.Auth, "")
	check("not a token creator at Terminate", g.d.Terminate(ctxT(t), "zones/us-central1-a/instances/rp-x"), cloud.Auth, "")
	_, err = g.d.InstanceTypes(ctxT(t))
	check("not a token creator at InstanceTypes", err, cloud.Auth, "")

	// Unknown image, subnetwork: invalid.
	for name, mutate := range map[string]func(*Config){
		"unknown image":      func(c *Config) { c.Cloud.Image = "projects/proj-test-1/global/images/nosuch" },
		"unknown subnetwork": func(c *Config) { c.Cloud.Subnetwork = "nosuch" },
		"unknown type":       func(c *Config) { c.Cloud.MachineTypes = []api.GCPMachineType{{Name: "n2-nosuch-4"}} },
	} {
		h := e.fixture(t, mutate)
		req, tok := h.request(t, "cls_k", "nod_ky", api.MarketOnDemand)
		req.InstanceType = h.cfg.Cloud.MachineTypes[0].Name
		_, err := h.d.Launch(ctxT(t), req)
		check(name, err, cloud.Invalid, tok)
	}
	// A machine type the cloud does not declare.
	req, _ = f.request(t, "cls_k", "nod_kz", api.MarketOnDemand)
	req.InstanceType = "e2-micro"
	_, err = f.d.Launch(ctxT(t), req)
	check("undeclared type", err, cloud.Invalid, "")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = f.d.List(ctx, nil)
	check("cancelled context", err, cloud.Transient, "")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled List: %v does not wrap context.Canceled", err)
	}
}

func (e *env) testInstanceTypes(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, nil)
	types, err := f.d.InstanceTypes(ctxT(t))
	if err != nil {
		t.Fatalf("InstanceTypes: %v", err)
	}
	want := []cloud.InstanceType{
		{Name: "g2-standard-8", CPUs: 8, MemoryBytes: 32 << 30, GPUs: 1, PricePerHour: 0.85},
		{Name: "n2-standard-4", CPUs: 4, MemoryBytes: 16 << 30, PricePerHour: 0.194, SpotPrice: 0.047},
	}
	if !slices.Equal(types, want) {
		t.Fatalf("InstanceTypes = %+v, want %+v", types, want)
	}
	g := e.fixture(t, func(c *Config) {
		c.Cloud.MachineTypes = append(slices.Clone(c.Cloud.MachineTypes), api.GCPMachineType{Name: "n2-nosuch-4"})
	})
	if _, err := g.d.InstanceTypes(ctxT(t)); cloud.KindOf(err) != cloud.Invalid || !strings.Contains(err.Error(), "n2-nosuch-4") {
		t.Fatalf("InstanceTypes with an unknown type = %v, want an invalid error naming it", err)
	}
}

func (e *env) testVerifyGood(t *testing.T) {
	t.Parallel()
	for name, mutate := range map[string]func(*Config){
		"subnetwork":   nil,
		"network only": func(c *Config) { c.Cloud.Subnetwork, c.Cloud.Network = "", "default" },
		"image family": func(c *Config) { c.Cloud.Image = "projects/proj-test-1/global/images/family/rayplane" },
	} {
		f := e.fixture(t, mutate)
		f.s.Image("projects/proj-test-1/global/images/family/rayplane")
		if err := f.d.Verify(ctxT(t)); err != nil {
			t.Errorf("%s: Verify: %v", name, err)
		}
	}
}

// verifyFailures answers Verify's failures, checking its kind.
func verifyFailures(t *testing.T, err error, kind cloud.Kind) []cloud.Failure {
	t.Helper()
	var ve *cloud.VerifyError
	if cloud.KindOf(err) != kind || !errors.As(err, &ve) {
		t.Fatalf("Verify = %v, want a %s *cloud.VerifyError", err, kind)
	}
	return ve.Failures
}

func hasFailure(fs []cloud.Failure, check, substr string) bool {
	for _, f := range fs {
		if f.Check == check && strings.Contains(f.Problem, substr) {
			return true
		}
	}
	return false
}

func (e *env) testVerifyNotATokenCreator(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, nil)
	f.s.ServiceAccount(customerSA, []string{"serviceAccount:someone-else@x.iam.gserviceaccount.com"}, gcprole.Permissions())
	err := f.d.Verify(ctxT(t))
	fs := verifyFailures(t, err, cloud.Auth)
	if len(fs) != 1 || !hasFailure(fs, CheckImpersonation, "serviceAccountTokenCreator") {
		t.Fatalf("Verify = %v", err)
	}
	if n := f.calls("compute.zones.get", nil); n != 0 {
		t.Errorf("Verify went on without impersonation (%d zones.get)", n)
	}
}

func (e *env) testVerifyMissingPermissions(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, nil)
	missing := []string{"compute.instances.delete", "iam.serviceAccounts.actAs", "compute.disks.create"}
	var perms []string
	for _, p := range gcprole.Permissions() {
		if !slices.Contains(missing, p) {
			perms = append(perms, p)
		}
	}
	f.s.SetPermissions(customerSA, perms)
	err := f.d.Verify(ctxT(t))
	fs := verifyFailures(t, err, cloud.Invalid)
	for _, p := range missing {
		if !hasFailure(fs, CheckPermissions, p) {
			t.Errorf("Verify does not name %s: %v", p, err)
		}
	}
	if len(fs) != len(missing) {
		t.Errorf("Verify = %v, want %d failures", err, len(missing))
	}
}

func (e *env) testVerifyMissingResources(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, func(c *Config) {
		c.Cloud.Zones = append(slices.Clone(c.Cloud.Zones), "us-central1-f")
		c.Cloud.Image = "projects/proj-test-1/global/images/nosuch-image"
		c.Cloud.Network = "nosuch-network"
		c.Cloud.Subnetwork = "nosuch-subnetwork"
		c.Cloud.MachineTypes = append(slices.Clone(c.Cloud.MachineTypes), api.GCPMachineType{Name: "n2-nosuch-4"})
	})
	err := f.d.Verify(ctxT(t))
	t.Logf("Verify: %v", err)
	fs := verifyFailures(t, err, cloud.Invalid)
	for _, w := range []struct{ check, substr string }{
		{CheckZones, "us-central1-f"},
		{CheckImage, "nosuch-image"},
		{CheckNetwork, "nosuch-network"},
		{CheckSubnetwork, "nosuch-subnetwork"},
		{CheckMachineTypes, "n2-nosuch-4"},
	} {
		if !hasFailure(fs, w.check, w.substr) || !strings.Contains(err.Error(), w.substr) {
			t.Errorf("Verify does not name %s %s: %v", w.check, w.substr, err)
		}
	}
	// The unknown type in each of the 4 zones, the known ones in the unknown zone.
	if want := 4 + 4 + 2; len(fs) != want {
		t.Errorf("Verify = %d failures, want %d", len(fs), want)
	}
	g := e.fixture(t, func(c *Config) { c.Cloud.Image = "projects/proj-test-1/global/images/family/nosuch" })
	fs = verifyFailures(t, g.d.Verify(ctxT(t)), cloud.Invalid)
	if len(fs) != 1 || !hasFailure(fs, CheckImage, "family nosuch") {
		t.Errorf("Verify with an unknown family = %v", fs)
	}
}

// testWorkloadIdentity: with a workload identity provider the control
// plane's own identity is the federated principal of its subject token;
// it impersonates the service account, and nothing else.
func (e *env) testWorkloadIdentity(t *testing.T) {
	t.Parallel()
	const provider = "projects/123456/locations/global/workloadIdentityPools/rayplane/providers/cp"
	f := e.fixture(t, nil)
	f.s.WorkloadIdentityProvider(provider, "https://rayplane.example", nil)
	file := filepath.Join(t.TempDir(), "token.jwt")
	if err := os.WriteFile(file, []byte(f.s.SubjectToken(t, provider, "rayplane-prod")), 0o600); err != nil {
		t.Fatal(err)
	}
	principal := gcptest.FederatedPrincipal(provider, "rayplane-prod")
	f.s.ServiceAccount(customerSA, []string{principal}, gcprole.Permissions())
	cfg := f.cfg
	cfg.Cloud.WorkloadIdentityProvider = provider
	cfg.SubjectTokenFile = file
	cfg.BaseCredentials = nil
	if got, err := Principal(ctxT(t), cfg); err != nil || got != principal {
		t.Fatalf("Principal = %q, %v; want %q", got, err, principal)
	}
	d := f.newDriver(t, cfg)
	if err := d.Verify(ctxT(t)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	req, _ := f.request(t, "cls_w", "nod_w", api.MarketOnDemand)
	if _, err := d.Launch(ctxT(t), req); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	// The subject token from a function (the control plane as its own
	// issuer) rather than a file.
	asked := 0
	var mu sync.Mutex
	cfg.SubjectTokenFile = ""
	cfg.SubjectToken = func(context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		asked++
		return f.s.SubjectToken(t, provider, "rayplane-prod"), nil
	}
	if got, err := Principal(ctxT(t), cfg); err != nil || got != principal {
		t.Fatalf("Principal with a token function = %q, %v", got, err)
	}
	if _, err := f.newDriver(t, cfg).List(ctxT(t), nil); err != nil {
		t.Fatalf("List with a token function: %v", err)
	}
	if mu.Lock(); asked < 2 {
		t.Errorf("the subject token function was asked %d times", asked)
	}
	mu.Unlock()
	for _, c := range f.s.Calls() {
		if c.Principal == principal && c.Method != "iamcredentials.projects.serviceAccounts.generateAccessToken" && c.Method != "sts.token" {
			t.Errorf("the federated identity called %s", c.Method)
		}
	}
	if f.calls("sts.token", nil) == 0 {
		t.Error("no STS exchange")
	}
	// Principal of a key: its client_email.
	if got, err := Principal(ctxT(t), f.cfg); err != nil || got != controlPlane {
		t.Fatalf("Principal of a key = %q, %v", got, err)
	}
}

// testEveryPermissionIsNeeded: for each permission of gcprole, a service
// account without it fails some call of the driver's work (launch with a
// node service account on a subnetwork, and on the default network; list;
// terminate; instance types; verify with an image and an image family):
// the role lists nothing the driver does not need.
func (e *env) testEveryPermissionIsNeeded(t *testing.T) {
	t.Parallel()
	if n := e.refusedWithout(t, ""); n != 0 {
		t.Fatalf("with every permission of gcprole, %d calls were refused", n)
	}
	for _, p := range gcprole.Permissions() {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			if e.refusedWithout(t, p) == 0 {
				t.Errorf("without %s no call of the driver was refused: gcprole lists a permission the driver does not need", p)
			}
		})
	}
}

// refusedWithout runs the driver's work with a service account holding
// gcprole's permissions but missing, and answers how many of its calls
// were refused (HTTP 403).
func (e *env) refusedWithout(t *testing.T, missing string) int {
	t.Helper()
	var perms []string
	for _, q := range gcprole.Permissions() {
		if q != missing {
			perms = append(perms, q)
		}
	}
	refused := 0
	for i, mutate := range []func(*Config){
		nil,
		func(c *Config) {
			c.Cloud.Subnetwork = ""
			c.Cloud.Image = "projects/proj-test-1/global/images/family/rayplane"
		},
	} {
		f := e.fixture(t, mutate)
		f.s.Image("projects/proj-test-1/global/images/family/rayplane")
		f.s.SetPermissions(customerSA, perms)
		req, _ := f.request(t, "cls_r", fmt.Sprintf("nod_r%d", i), api.MarketOnDemand)
		inst, _ := f.d.Launch(ctxT(t), req)
		_, _ = f.d.List(ctxT(t), nil)
		if inst.ID != "" {
			_ = f.d.Terminate(ctxT(t), inst.ID)
		}
		_, _ = f.d.InstanceTypes(ctxT(t))
		_ = f.d.Verify(ctxT(t))
		for _, c := range f.s.Calls() {
			if c.Status == 403 && c.Principal == customerSA {
				refused++
			}
		}
	}
	return refused
}

// testCallsAreInTheRole: every call the driver made with the service
// account's tokens in these tests is one of gcprole.Calls, every call
// gcprole lists was made, and the control plane's own identity only
// minted tokens.
func (e *env) testCallsAreInTheRole(t *testing.T) {
	listed := map[string]bool{}
	for _, c := range gcprole.Calls {
		listed[c.Method] = true
	}
	seen := map[string]bool{}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.calls {
		switch {
		case c.Principal == customerSA:
			if !listed[c.Method] {
				t.Errorf("the driver called %s (%s), which gcprole.Calls lacks", c.Method, c.Path)
			}
			seen[c.Method] = true
		case c.Principal == "" || c.Principal == nodeSA:
		default:
			// The control plane's own identity (a key or federated).
			if !slices.Contains([]string{"oauth2.token", "sts.token", "iamcredentials.projects.serviceAccounts.generateAccessToken"}, c.Method) {
				t.Errorf("the control plane's own identity %s called %s", c.Principal, c.Method)
			}
		}
	}
	for m := range listed {
		if !seen[m] {
			t.Errorf("gcprole.Calls lists %s, which the tests never saw the driver call", m)
		}
	}
}

// TestApplicationDefaultCredentials: without BaseCredentials the driver
// detects the control plane's identity as the Google libraries do (here a
// key file named by GOOGLE_APPLICATION_CREDENTIALS, whose token_uri the
// library honours), and Principal names its email.
func TestApplicationDefaultCredentials(t *testing.T) {
	e := &env{}
	f := e.fixture(t, func(c *Config) { c.BaseCredentials = nil })
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", f.key)
	if got, err := Principal(ctxT(t), f.cfg); err != nil || got != controlPlane {
		t.Fatalf("Principal = %q, %v; want %q", got, err, controlPlane)
	}
	if err := f.d.Verify(ctxT(t)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if _, err := f.d.List(ctxT(t), nil); err != nil {
		t.Fatalf("List: %v", err)
	}
	if n := f.calls("oauth2.token", func(c gcptest.Call) bool { return c.Principal == controlPlane && c.Status == 200 }); n == 0 {
		t.Fatal("the key's token endpoint was not called")
	}
}

// testGPUs: a machine type with GPUs launches standard with host
// maintenance TERMINATE (GCE refuses live migration of GPUs), on_demand
// and as prefer_spot's fallback; spot keeps its own scheduling.
func (e *env) testGPUs(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, nil)
	standard := func(t *testing.T, got gcptest.Instance) {
		t.Helper()
		sc := got.Scheduling
		if got.Spot || sc.GetProvisioningModel() != "STANDARD" || sc.GetOnHostMaintenance() != "TERMINATE" || sc.GetAutomaticRestart() {
			t.Errorf("GPU standard scheduling %v", sc)
		}
	}
	req, _ := f.request(t, "cls_g", "nod_g1", api.MarketOnDemand)
	req.InstanceType = "g2-standard-8"
	inst, err := f.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("on_demand GPU Launch: %v", err)
	}
	standard(t, f.instance(t, inst.ID))

	spot := true
	undo := f.s.FailCapacity(gcptest.Fault{Spot: &spot})
	req, _ = f.request(t, "cls_g", "nod_g2", api.MarketPreferSpot)
	req.InstanceType = "g2-standard-8"
	inst, err = f.d.Launch(ctxT(t), req)
	undo()
	if err != nil {
		t.Fatalf("prefer_spot GPU Launch without spot capacity: %v", err)
	}
	standard(t, f.instance(t, inst.ID))

	req, _ = f.request(t, "cls_g", "nod_g3", api.MarketSpot)
	req.InstanceType = "g2-standard-8"
	inst, err = f.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("spot GPU Launch: %v", err)
	}
	if got := f.instance(t, inst.ID); !got.Spot || got.Scheduling.GetOnHostMaintenance() != "TERMINATE" {
		t.Errorf("GPU spot scheduling %v", got.Scheduling)
	}
	// A type without GPUs keeps GCE's defaults (live migration).
	req, _ = f.request(t, "cls_g", "nod_g4", api.MarketOnDemand)
	inst, err = f.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if sc := f.instance(t, inst.ID).Scheduling; sc.GetOnHostMaintenance() != "MIGRATE" || !sc.GetAutomaticRestart() {
		t.Errorf("n2 scheduling %v", sc)
	}
}

// testFailedOperationIsRetried: an insert whose operation failed made no
// instance, and its request id would only answer that failed operation
// again: the next launch uses the next attempt's id, in the same driver
// and in one restarted since (which learns it from the replayed answer).
func (e *env) testFailedOperationIsRetried(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, func(c *Config) { c.Cloud.Zones = testZones[:1] })
	for i, restart := range []bool{false, true} {
		node := fmt.Sprintf("nod_o%d", i)
		req, _ := f.request(t, "cls_o", node, api.MarketOnDemand)
		undo := f.s.FailInternal(gcptest.Fault{})
		_, err := f.d.Launch(ctxT(t), req)
		undo()
		if cloud.KindOf(err) != cloud.Transient || !strings.Contains(err.Error(), "INTERNAL_ERROR") {
			t.Fatalf("Launch with a failed operation = %v, want a transient error", err)
		}
		d := f.d
		if restart {
			d = f.newDriver(t, f.cfg)
		}
		inst, err := d.Launch(ctxT(t), req)
		if err != nil {
			t.Fatalf("Launch after a failed operation (restart %t): %v", restart, err)
		}
		got := f.instance(t, inst.ID)
		if got.RequestID != requestID(node, testZones[0], api.MarketOnDemand, 1) {
			t.Errorf("restart %t: the relaunch's request id is not the next attempt's", restart)
		}
		if n := len(f.instances(node)); n != 1 {
			t.Errorf("restart %t: %d instances", restart, n)
		}
	}
	// A capacity failure of a zone is retried there too, later.
	g := e.fixture(t, func(c *Config) { c.Cloud.Zones = testZones[:1] })
	req, _ := g.request(t, "cls_o", "nod_oc", api.MarketOnDemand)
	undo := g.s.FailCapacity(gcptest.Fault{})
	if _, err := g.d.Launch(ctxT(t), req); cloud.KindOf(err) != cloud.Capacity {
		t.Fatalf("Launch without capacity = %v", err)
	}
	undo()
	if _, err := g.d.Launch(ctxT(t), req); err != nil {
		t.Fatalf("Launch once capacity is back: %v", err)
	}
}

// testTerminateOnlyOurs: Terminate deletes only an instance named after a
// node, labelled managed-by rayplane and of this cloud; another is an
// invalid error and is left alone; one gone is done.
func (e *env) testTerminateOnlyOurs(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, nil)
	// Another cloud's node in the same project.
	otherCfg := f.cfg
	otherCfg.CloudID = "cld_other"
	other := f.newDriver(t, otherCfg)
	req, _ := f.request(t, "cls_x", "nod_x1", api.MarketOnDemand)
	req.Tags[cloud.TagCloud] = "cld_other"
	theirs, err := other.Launch(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	// An instance of the node's name that rayplane did not label.
	c, err := f.d.clients(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	req2, _ := f.request(t, "cls_x", "nod_x2", api.MarketOnDemand)
	_, _ = f.d.insert(ctxT(t), c, req2, InstanceName("nod_x2"), map[string]string{cloud.TagNode: "nod_x2"}, "#!/bin/sh\n", testZones[0], api.MarketOnDemand, false)
	foreign := instanceID(testZones[0], InstanceName("nod_x2"))
	f.instance(t, foreign)
	for _, id := range []string{theirs.ID, foreign} {
		if err := f.d.Terminate(ctxT(t), id); cloud.KindOf(err) != cloud.Invalid {
			t.Errorf("Terminate %s = %v, want an invalid error", id, err)
		}
		f.instance(t, id) // still there
	}
	before := len(f.s.Calls())
	if err := f.d.Terminate(ctxT(t), "zones/us-central1-a/instances/web-1"); cloud.KindOf(err) != cloud.Invalid {
		t.Errorf("Terminate of a name not rp- = %v", err)
	}
	if n := len(f.s.Calls()) - before; n != 0 {
		t.Errorf("Terminate of a name not rp- made %d calls", n)
	}
	if err := f.d.Terminate(ctxT(t), "zones/us-central1-a/instances/rp-nod-gone"); err != nil {
		t.Errorf("Terminate of an instance that is gone = %v", err)
	}
	if err := other.Terminate(ctxT(t), theirs.ID); err != nil {
		t.Errorf("Terminate by its own cloud = %v", err)
	}
}

// testInstanceTypesAreCached: the catalog is asked of GCE once an hour,
// not at every pass; a failure is not kept.
func (e *env) testInstanceTypesAreCached(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, nil)
	gets := func() int { return f.calls("compute.machineTypes.get", nil) }
	undo := f.s.FailRequests("compute.machineTypes.get", 500, -1)
	if _, err := f.d.InstanceTypes(ctxT(t)); cloud.KindOf(err) != cloud.Transient {
		t.Fatalf("InstanceTypes against 500s = %v", err)
	}
	undo()
	failed := gets()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if types, err := f.d.InstanceTypes(ctxT(t)); err != nil || len(types) != 2 {
				t.Errorf("InstanceTypes = %v, %v", types, err)
			}
		})
	}
	wg.Wait()
	first := gets() - failed
	if first < 2 || first > 16 {
		t.Fatalf("the first InstanceTypes calls made %d gets", first)
	}
	for range 5 {
		f.now.Add(10 * time.Minute)
		if _, err := f.d.InstanceTypes(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		req, _ := f.request(t, "cls_y", "nod_y"+randomID(t)[:4], api.MarketOnDemand)
		if _, err := f.d.Launch(ctxT(t), req); err != nil {
			t.Fatal(err)
		}
	}
	if n := gets() - failed - first; n != 0 {
		t.Fatalf("within the hour %d more gets", n)
	}
	f.now.Add(11 * time.Minute)
	if _, err := f.d.InstanceTypes(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := gets() - failed - first; n != 2 {
		t.Fatalf("after the hour %d gets, want 2", n)
	}
}

// testVerifyWithoutNodeServiceAccount: a cloud without a node service
// account does not need actAs nor setServiceAccount.
func (e *env) testVerifyWithoutNodeServiceAccount(t *testing.T) {
	t.Parallel()
	f := e.fixture(t, func(c *Config) { c.Cloud.NodeServiceAccount = "" })
	f.s.SetPermissions(customerSA, gcprole.PermissionsFor(false))
	if err := f.d.Verify(ctxT(t)); err != nil {
		t.Fatalf("Verify without a node service account: %v", err)
	}
	req, _ := f.request(t, "cls_v", "nod_v", api.MarketOnDemand)
	if _, err := f.d.Launch(ctxT(t), req); err != nil {
		t.Fatalf("Launch without a node service account: %v", err)
	}
	g := e.fixture(t, nil)
	g.s.SetPermissions(customerSA, gcprole.PermissionsFor(false))
	fs := verifyFailures(t, g.d.Verify(ctxT(t)), cloud.Invalid)
	if len(fs) != 2 || !hasFailure(fs, CheckPermissions, "iam.serviceAccounts.actAs") || !hasFailure(fs, CheckPermissions, "compute.instances.setServiceAccount") {
		t.Fatalf("Verify with a node service account and without actAs = %v", fs)
	}
}

// TestVerifyManyMachineTypes: the most a cloud declares, 64 machine types
// in 16 zones, is verified well within the 30 s a verification has. Not
// parallel with the other tests: it measures time.
func TestVerifyManyMachineTypes(t *testing.T) {
	e := &env{}
	var zones []string
	for _, r := range "abcdefghijklmnop" {
		zones = append(zones, testRegion+"-"+string(r))
	}
	// Each call answers after 30 ms, a real API's round trip: one after
	// the other, the 1024 gets would take over 30 s, the verifier's
	// deadline. The test does not time Verify (a busy machine would make
	// that flaky): it checks, from the server's side, that the gets overlap
	// and that no more than parallelGets run at once.
	f := e.fixtureOf(t, gcptest.Options{Project: testProject, Region: testRegion, Zones: zones, Latency: 30 * time.Millisecond},
		func(c *Config) { c.Cloud.Zones = zones })
	var types []api.GCPMachineType
	for i := range maxMachineTypes {
		name := fmt.Sprintf("n2-custom-%d", i+1)
		f.s.MachineType(name, 2, 4096, 0)
		types = append(types, api.GCPMachineType{Name: name, PricePerHour: 0.1})
	}
	cfg := f.cfg
	cfg.Cloud.MachineTypes = types
	d := f.newDriver(t, cfg)
	start := time.Now()
	if err := d.Verify(ctxT(t)); err != nil {
		t.Fatalf("Verify of %d types: %v", len(types), err)
	}
	t.Logf("Verify of %d types in %d zones: %s, at most %d requests at once", len(types), len(cfg.Cloud.Zones), time.Since(start), f.s.MaxInFlight())
	if n := f.calls("compute.machineTypes.get", nil); n != len(types)*len(zones) {
		t.Errorf("%d machineTypes.get, want %d", n, len(types)*len(zones))
	}
	if m := f.s.MaxInFlight(); m < 2 || m > parallelGets {
		t.Errorf("at most %d requests at once, want the gets to overlap, %d at most", m, parallelGets)
	}
}
