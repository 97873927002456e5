package gcptest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

func TestFaults(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.instances(t, f.impersonated(t, f.base(t), customerSA))
	spot := true

	undo := f.s.FailCapacity(Fault{Zone: "us-central1-a", Spot: &spot})
	inst := instanceResource("rp-spot", nil)
	inst.Scheduling = &computepb.Scheduling{ProvisioningModel: proto.String("SPOT"), InstanceTerminationAction: proto.String("DELETE"),
		AutomaticRestart: proto.Bool(false), OnHostMaintenance: proto.String("TERMINATE")}
	op, err := insert(t, c, "us-central1-a", inst, "")
	if err != nil {
		t.Fatalf("insert is accepted, its operation fails: %v", err)
	}
	err = op.Wait(ctx)
	if err == nil || op.Proto().GetError().GetErrors()[0].GetCode() != "ZONE_RESOURCE_POOL_EXHAUSTED" || httpCode(err) != 503 {
		t.Errorf("capacity: %v / %v", err, op.Proto())
	}
	// Standard in the same zone is not affected.
	if op, err := insert(t, c, "us-central1-a", instanceResource("rp-standard", nil), ""); err != nil || op.Wait(ctx) != nil {
		t.Errorf("standard insert: %v", err)
	}
	undo()
	undoQuota := f.s.FailQuota(Fault{MachineType: "n2-standard-8"})
	op, err = insert(t, c, "us-central1-a", instanceResource("rp-quota", nil), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := op.Wait(ctx); err == nil || op.Proto().GetError().GetErrors()[0].GetCode() != "QUOTA_EXCEEDED" {
		t.Errorf("quota: %v / %v", err, op.Proto())
	}
	undoQuota()
	// A transient failure of the operation; its requestId answers the
	// failed operation again (done), even once the fault is gone.
	const failedID = "6f1c7a52-8d3e-5b7a-9c1d-2e3f4a5b6c7d"
	undoInternal := f.s.FailInternal(Fault{})
	op, err = insert(t, c, "us-central1-a", instanceResource("rp-internal", nil), failedID)
	if err != nil {
		t.Fatal(err)
	}
	if op.Proto().GetStatus() == computepb.Operation_DONE {
		t.Errorf("a fresh insert answered its operation done")
	}
	if err := op.Wait(ctx); err == nil || op.Proto().GetError().GetErrors()[0].GetCode() != "INTERNAL_ERROR" || httpCode(err) != 500 {
		t.Errorf("internal: %v / %v", err, op.Proto())
	}
	undoInternal()
	op, err = insert(t, c, "us-central1-a", instanceResource("rp-internal", nil), failedID)
	if err != nil || op.Proto().GetStatus() != computepb.Operation_DONE || op.Proto().GetError().GetErrors()[0].GetCode() != "INTERNAL_ERROR" {
		t.Errorf("the failed insert's requestId again = %v, %v", op.Proto(), err)
	}
	if got := f.s.Instances(); len(got) != 1 || got[0].Name != "rp-standard" {
		t.Errorf("failed inserts made instances: %+v", got)
	}

	// A standard VM with GPUs must not live migrate: Compute Engine's 400.
	gpu := instanceResource("rp-gpu", nil)
	gpu.MachineType = proto.String("zones/us-central1-a/machineTypes/g2-standard-8")
	if _, err := insert(t, c, "us-central1-a", gpu, ""); httpCode(err) != 400 || !strings.Contains(err.Error(), "do not support live migration") {
		t.Errorf("GPU VM on live migration: %v", err)
	}
	gpu.Scheduling = &computepb.Scheduling{OnHostMaintenance: proto.String("MIGRATE")}
	if _, err := insert(t, c, "us-central1-a", gpu, ""); httpCode(err) != 400 {
		t.Errorf("GPU VM with MIGRATE: %v", err)
	}
	gpu.Scheduling = &computepb.Scheduling{OnHostMaintenance: proto.String("TERMINATE"), AutomaticRestart: proto.Bool(false)}
	if op, err := insert(t, c, "us-central1-a", gpu, ""); err != nil || op.Wait(ctx) != nil {
		t.Errorf("GPU VM with TERMINATE: %v", err)
	}
	if _, err := c.Delete(ctx, &computepb.DeleteInstanceRequest{Project: DefaultProject, Zone: "us-central1-a", Instance: "rp-gpu"}); err != nil {
		t.Fatal(err)
	}

	// Injected HTTP errors (what the driver's retries see). The compute
	// client retries a GET answered 503 by itself; 429 reaches the caller.
	get := func() error {
		_, err := c.Get(ctx, &computepb.GetInstanceRequest{Project: DefaultProject, Zone: "us-central1-a", Instance: "rp-standard"})
		return err
	}
	before := len(f.s.Calls())
	undoFail := f.s.FailRequests("compute.instances.get", 503, 1)
	defer undoFail()
	if err := get(); err != nil {
		t.Errorf("503 once, retried by the client: %v", err)
	}
	var statuses []int
	for _, call := range f.s.Calls()[before:] {
		statuses = append(statuses, call.Status)
	}
	if fmt.Sprint(statuses) != "[503 200]" {
		t.Errorf("get calls answered %v", statuses)
	}
	f.s.FailRequests("compute.instances.get", 429, 1)
	if err := get(); httpCode(err) != 429 || reason(err) != "rateLimitExceeded" {
		t.Errorf("injected 429: %v", err)
	}
	if err := get(); err != nil {
		t.Errorf("after the injected failures: %v", err)
	}
}

// TestHolds: an insert whose answer is held has made its instance (a
// control plane killed while waiting finds it by its labels), and
// HoldProvisioning keeps instances PROVISIONING with their operations
// RUNNING until released.
func TestHolds(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := f.instances(t, f.impersonated(t, f.base(t), customerSA))

	release := f.s.HoldInserts()
	done := make(chan error, 1)
	go func() {
		_, err := insert(t, c, "us-central1-a", instanceResource("rp-held", map[string]string{"rayplane-node": "node_h"}), "")
		done <- err
	}()
	if err := f.s.WaitInstances(ctx, func(is []Instance) bool { return len(is) == 1 }); err != nil {
		t.Fatal(err)
	}
	if got := aggregatedNames(t, c, `labels.rayplane-node = "node_h"`, 0); strings.Join(got, ",") != "rp-held" {
		t.Errorf("held insert not listed: %v", got)
	}
	select {
	case err := <-done:
		t.Fatalf("held insert answered: %v", err)
	default:
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("released insert: %v", err)
	}

	releaseProv := f.s.HoldProvisioning()
	op, err := insert(t, c, "us-central1-b", withZone(instanceResource("rp-slow", nil), "us-central1-b"), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := op.Poll(ctx); err != nil || op.Done() {
		t.Fatalf("held operation: done=%v %v", op.Done(), err)
	}
	if got := aggregatedNames(t, c, `status = PROVISIONING`, 0); strings.Join(got, ",") != "rp-slow" {
		t.Errorf("provisioning: %v", got)
	}
	waited := make(chan error, 1)
	go func() { waited <- op.Wait(ctx) }()
	releaseProv()
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if err := f.s.WaitInstances(ctx, func(is []Instance) bool { return is[1].Status == "RUNNING" }); err != nil {
		t.Fatal(err)
	}
}

func withZone(inst *computepb.Instance, zone string) *computepb.Instance {
	inst.MachineType = proto.String("zones/" + zone + "/machineTypes/n2-standard-8")
	return inst
}

func TestPreempt(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.instances(t, f.impersonated(t, f.base(t), customerSA))
	for _, action := range []string{"DELETE", "STOP"} {
		name := "rp-" + strings.ToLower(action)
		inst := instanceResource(name, nil)
		inst.Scheduling = &computepb.Scheduling{ProvisioningModel: proto.String("SPOT"), InstanceTerminationAction: proto.String(action),
			AutomaticRestart: proto.Bool(false), OnHostMaintenance: proto.String("TERMINATE")}
		op, err := insert(t, c, "us-central1-a", inst, "")
		if err != nil || op.Wait(ctx) != nil {
			t.Fatal(err)
		}
		f.s.Preempt(name)
	}
	if got := aggregatedNames(t, c, "", 0); strings.Join(got, ",") != "rp-stop" {
		t.Errorf("after preemption: %v", got)
	}
	if got := aggregatedNames(t, c, "status = TERMINATED", 0); strings.Join(got, ",") != "rp-stop" {
		t.Errorf("terminated: %v", got)
	}
}

// TestVerifyCalls: the read calls of the driver's verification, with the
// real clients.
func TestVerifyCalls(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	opts := f.options(f.impersonated(t, f.base(t), customerSA))
	zones, err := compute.NewZonesRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer zones.Close()
	z, err := zones.Get(ctx, &computepb.GetZoneRequest{Project: DefaultProject, Zone: "us-central1-c"})
	if err != nil || !strings.HasSuffix(z.GetRegion(), "/regions/us-central1") {
		t.Errorf("zone: %v %v", z, err)
	}
	if _, err := zones.Get(ctx, &computepb.GetZoneRequest{Project: DefaultProject, Zone: "us-east1-b"}); httpCode(err) != 404 {
		t.Errorf("unknown zone: %v", err)
	}
	mts, err := compute.NewMachineTypesRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer mts.Close()
	mt, err := mts.Get(ctx, &computepb.GetMachineTypeRequest{Project: DefaultProject, Zone: "us-central1-a", MachineType: "g2-standard-8"})
	if err != nil || mt.GetGuestCpus() != 8 || mt.GetMemoryMb() != 32768 || mt.GetAccelerators()[0].GetGuestAcceleratorCount() != 1 {
		t.Errorf("machine type: %v %v", mt, err)
	}
	if _, err := mts.Get(ctx, &computepb.GetMachineTypeRequest{Project: DefaultProject, Zone: "us-central1-a", MachineType: "n9-none"}); httpCode(err) != 404 {
		t.Errorf("unknown machine type: %v", err)
	}
	images, err := compute.NewImagesRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer images.Close()
	if img, err := images.Get(ctx, &computepb.GetImageRequest{Project: DefaultProject, Image: "rayplane-node"}); err != nil || img.GetStatus() != "READY" {
		t.Errorf("image: %v %v", img, err)
	}
	if img, err := images.GetFromFamily(ctx, &computepb.GetFromFamilyImageRequest{Project: "debian-cloud", Family: "debian-12"}); err != nil || img.GetFamily() != "debian-12" {
		t.Errorf("family: %v %v", img, err)
	}
	if _, err := images.GetFromFamily(ctx, &computepb.GetFromFamilyImageRequest{Project: "debian-cloud", Family: "debian-99"}); httpCode(err) != 404 {
		t.Errorf("unknown family: %v", err)
	}
	networks, err := compute.NewNetworksRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer networks.Close()
	if n, err := networks.Get(ctx, &computepb.GetNetworkRequest{Project: DefaultProject, Network: "default"}); err != nil || len(n.GetSubnetworks()) != 1 {
		t.Errorf("network: %v %v", n, err)
	}
	subs, err := compute.NewSubnetworksRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer subs.Close()
	if s, err := subs.Get(ctx, &computepb.GetSubnetworkRequest{Project: DefaultProject, Region: "us-central1", Subnetwork: "nodes"}); err != nil || !strings.HasSuffix(s.GetNetwork(), "/global/networks/default") {
		t.Errorf("subnetwork: %v %v", s, err)
	}
	if _, err := subs.Get(ctx, &computepb.GetSubnetworkRequest{Project: DefaultProject, Region: "us-central1", Subnetwork: "nope"}); httpCode(err) != 404 {
		t.Errorf("unknown subnetwork: %v", err)
	}
}

// TestConcurrentInserts: many clients at once (run with -race).
func TestConcurrentInserts(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.instances(t, f.impersonated(t, f.base(t), customerSA))
	const n = 12
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			op, err := insert(t, c, "us-central1-a", instanceResource(fmt.Sprintf("rp-c%d", i), map[string]string{"rayplane-cluster": "c"}), "")
			if err == nil {
				err = op.Wait(ctx)
			}
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := aggregatedNames(t, c, `labels.rayplane-cluster = "c"`, 5); len(got) != n {
		t.Errorf("listed %d of %d", len(got), n)
	}
}

func TestStartGCS(t *testing.T) {
	host := StartGCS(t)
	resp, err := http.Post("http://"+host+"/storage/v1/b?project=p", "application/json", strings.NewReader(`{"name":"logs"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Post("http://"+host+"/upload/storage/v1/b/logs/o?uploadType=media&name=a/b.log", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get("http://" + host + "/storage/v1/b/logs/o?prefix=a/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), `"a/b.log"`) {
		t.Errorf("objects: %s", b)
	}
}
