package gcptest

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"testing"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/credentials"
	"cloud.google.com/go/auth/credentials/impersonate"
	"cloud.google.com/go/auth/httptransport"
	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"
)

const (
	controlPlane = "rayplane-control@rayplane-prod.iam.gserviceaccount.com"
	customerSA   = "rayplane@customer.iam.gserviceaccount.com"
	nodeSA       = "rayplane-nodes@customer.iam.gserviceaccount.com"
	testImage    = "projects/rayplane-test/global/images/rayplane-node"
)

// The permissions of the customer's service account in these tests.
var allPermissions = []string{
	"compute.instances.create", "compute.instances.get", "compute.instances.list", "compute.instances.delete",
	"compute.instances.setMetadata", "compute.instances.setLabels", "compute.instances.setServiceAccount",
	"compute.disks.create", "compute.images.useReadOnly", "compute.images.get", "compute.images.getFromFamily",
	"compute.subnetworks.use", "compute.networks.use", "compute.zoneOperations.get", "compute.zones.get",
	"compute.machineTypes.get", "compute.networks.get", "compute.subnetworks.get", "iam.serviceAccounts.actAs",
}

// rewrite sends requests for *.googleapis.com to the server, as the driver's
// Endpoint transport does.
type rewrite struct {
	to *url.URL
}

func (r rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Host, ".googleapis.com") {
		req = req.Clone(req.Context())
		req.URL.Scheme, req.URL.Host, req.Host = r.to.Scheme, r.to.Host, r.to.Host
	}
	return http.DefaultTransport.RoundTrip(req)
}

// fixture is a server with the customer's project set up and the control
// plane's own key.
type fixture struct {
	s       *Server
	keyPath string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s := Start(t, Options{})
	f := &fixture{s: s, keyPath: s.ControlPlaneKey(t, controlPlane)}
	s.ServiceAccount(customerSA, []string{"serviceAccount:" + controlPlane}, allPermissions)
	s.ServiceAccount(nodeSA, nil, nil)
	s.Image(testImage)
	s.Image("projects/debian-cloud/global/images/family/debian-12")
	s.Network("default")
	s.Subnetwork("us-central1", "nodes")
	s.MachineType("n2-standard-8", 8, 32768, 0)
	s.MachineType("g2-standard-8", 8, 32768, 1)
	return f
}

// base is the control plane's own identity from its key file (the JWT
// bearer grant at the server's /token).
func (f *fixture) base(t *testing.T) *auth.Credentials {
	t.Helper()
	b, err := os.ReadFile(f.keyPath)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := credentials.DetectDefault(&credentials.DetectOptions{
		Scopes:          []string{cloudPlatformScope},
		CredentialsJSON: b,
	})
	if err != nil {
		t.Fatalf("detect: %v", err)
	}
	return creds
}

// impersonated is target's credentials obtained with base through
// generateAccessToken.
func (f *fixture) impersonated(t *testing.T, base *auth.Credentials, target string) *auth.Credentials {
	t.Helper()
	u, _ := url.Parse(f.s.URL)
	client, err := httptransport.NewClient(&httptransport.Options{Credentials: base, BaseRoundTripper: rewrite{u}})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := impersonate.NewCredentials(&impersonate.CredentialsOptions{
		TargetPrincipal: target,
		Scopes:          []string{cloudPlatformScope},
		Credentials:     base,
		Client:          client,
	})
	if err != nil {
		t.Fatalf("impersonate: %v", err)
	}
	return creds
}

func (f *fixture) options(creds *auth.Credentials) []option.ClientOption {
	return []option.ClientOption{option.WithEndpoint(f.s.URL), option.WithAuthCredentials(creds)}
}

func (f *fixture) instances(t *testing.T, creds *auth.Credentials) *compute.InstancesClient {
	t.Helper()
	c, err := compute.NewInstancesRESTClient(context.Background(), f.options(creds)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func httpCode(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

func reason(err error) string {
	var ge *googleapi.Error
	if errors.As(err, &ge) && len(ge.Errors) > 0 {
		return ge.Errors[0].Reason
	}
	return ""
}

func instanceResource(name string, labels map[string]string) *computepb.Instance {
	return &computepb.Instance{
		Name:        proto.String(name),
		MachineType: proto.String("zones/us-central1-a/machineTypes/n2-standard-8"),
		Disks: []*computepb.AttachedDisk{{
			Boot:             proto.Bool(true),
			AutoDelete:       proto.Bool(true),
			InitializeParams: &computepb.AttachedDiskInitializeParams{SourceImage: proto.String(testImage)},
		}},
		NetworkInterfaces: []*computepb.NetworkInterface{{Subnetwork: proto.String("regions/us-central1/subnetworks/nodes")}},
		Labels:            labels,
		Metadata: &computepb.Metadata{Items: []*computepb.Items{
			{Key: proto.String("startup-script"), Value: proto.String("#!/bin/sh\necho hi\n")},
		}},
		ServiceAccounts: []*computepb.ServiceAccount{{
			Email:  proto.String(nodeSA),
			Scopes: []string{"https://www.googleapis.com/auth/devstorage.read_write"},
		}},
	}
}

func insert(t *testing.T, c *compute.InstancesClient, zone string, inst *computepb.Instance, requestID string) (*compute.Operation, error) {
	t.Helper()
	req := &computepb.InsertInstanceRequest{Project: DefaultProject, Zone: zone, InstanceResource: inst}
	if requestID != "" {
		req.RequestId = proto.String(requestID)
	}
	return c.Insert(context.Background(), req)
}

func aggregatedNames(t *testing.T, c *compute.InstancesClient, filter string, pageSize uint32) []string {
	t.Helper()
	req := &computepb.AggregatedListInstancesRequest{Project: DefaultProject, Filter: proto.String(filter)}
	if pageSize > 0 {
		req.MaxResults = proto.Uint32(pageSize)
	}
	it := c.AggregatedList(context.Background(), req)
	var names []string
	for {
		pair, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatalf("aggregated list %q: %v", filter, err)
		}
		if !strings.HasPrefix(pair.Key, "zones/") {
			t.Errorf("aggregated key %q", pair.Key)
		}
		for _, inst := range pair.Value.GetInstances() {
			if "zones/"+lastSegment(inst.GetZone()) != pair.Key {
				t.Errorf("instance %s of %s listed under %s", inst.GetName(), inst.GetZone(), pair.Key)
			}
			names = append(names, inst.GetName())
		}
	}
	sort.Strings(names)
	return names
}

// TestLifecycle drives the server with the real clients as the driver
// will: key file → token, impersonation, insert, wait, get, list, delete.
func TestLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	creds := f.impersonated(t, f.base(t), customerSA)
	c := f.instances(t, creds)

	labels := map[string]string{"rayplane-managed-by": "rayplane", "rayplane-node": "node_1"}
	op, err := insert(t, c, "us-central1-a", instanceResource("rp-node-1", labels), "6f1c2a52-4a1b-5c3d-8e9f-0a1b2c3d4e5f")
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	if op.Done() {
		t.Errorf("insert answered DONE; Compute Engine answers RUNNING")
	}
	if err := op.Wait(ctx); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if !op.Done() || op.Proto().GetError() != nil {
		t.Fatalf("operation after wait: %v", op.Proto())
	}
	got, err := c.Get(ctx, &computepb.GetInstanceRequest{Project: DefaultProject, Zone: "us-central1-a", Instance: "rp-node-1"})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.GetStatus() != "RUNNING" || got.GetLabels()["rayplane-node"] != "node_1" ||
		got.GetNetworkInterfaces()[0].GetNetworkIP() == "" ||
		!strings.HasSuffix(got.GetMachineType(), "/zones/us-central1-a/machineTypes/n2-standard-8") ||
		got.GetServiceAccounts()[0].GetEmail() != nodeSA {
		t.Errorf("get answered %v", got)
	}

	// A second in another zone, then lists.
	inst2 := instanceResource("rp-node-2", map[string]string{"rayplane-managed-by": "rayplane", "rayplane-node": "node_2"})
	inst2.MachineType = proto.String("zones/us-central1-b/machineTypes/n2-standard-8")
	op2, err := insert(t, c, "us-central1-b", inst2, "")
	if err != nil {
		t.Fatalf("insert 2: %v", err)
	}
	if err := op2.Wait(ctx); err != nil {
		t.Fatalf("wait 2: %v", err)
	}
	names := aggregatedNames(t, c, `labels.rayplane-managed-by = "rayplane"`, 0)
	if strings.Join(names, ",") != "rp-node-1,rp-node-2" {
		t.Errorf("aggregated list: %v", names)
	}
	names = aggregatedNames(t, c, `(labels.rayplane-node = "node_2") AND (status != "TERMINATED")`, 0)
	if strings.Join(names, ",") != "rp-node-2" {
		t.Errorf("aggregated list by node: %v", names)
	}

	// Delete: the instance is gone; a second delete is 404.
	dop, err := c.Delete(ctx, &computepb.DeleteInstanceRequest{Project: DefaultProject, Zone: "us-central1-a", Instance: "rp-node-1"})
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := dop.Wait(ctx); err != nil {
		t.Fatalf("wait delete: %v", err)
	}
	_, err = c.Get(ctx, &computepb.GetInstanceRequest{Project: DefaultProject, Zone: "us-central1-a", Instance: "rp-node-1"})
	if httpCode(err) != 404 || reason(err) != "notFound" {
		t.Errorf("get after delete: %v", err)
	}
	_, err = c.Delete(ctx, &computepb.DeleteInstanceRequest{Project: DefaultProject, Zone: "us-central1-a", Instance: "rp-node-1"})
	if httpCode(err) != 404 {
		t.Errorf("second delete: %v", err)
	}
	names = aggregatedNames(t, c, "", 0)
	if strings.Join(names, ",") != "rp-node-2" {
		t.Errorf("after delete: %v", names)
	}

	// Every compute call was made by the impersonated account; the token
	// calls by the control plane's key.
	for _, call := range f.s.Calls() {
		switch {
		case strings.HasPrefix(call.Method, "compute."):
			if call.Principal != customerSA {
				t.Errorf("%s called by %q", call.Method, call.Principal)
			}
		case call.Method == "oauth2.token", call.Method == "iamcredentials.projects.serviceAccounts.generateAccessToken":
			if call.Principal != controlPlane || call.Status != 200 {
				t.Errorf("%s: %+v", call.Method, call)
			}
		}
	}
	all := f.s.Instances()
	if len(all) != 2 || !all[0].Deleted || all[1].Deleted || all[0].RequestID == "" || all[0].Metadata["startup-script"] == "" || all[1].Status != "RUNNING" {
		t.Errorf("Instances: %+v", all)
	}
}

func TestRequestIDAndCollision(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.instances(t, f.impersonated(t, f.base(t), customerSA))
	const id = "0b6e8d0c-9d1f-5e2a-8b3c-4d5e6f708192"
	op1, err := insert(t, c, "us-central1-a", instanceResource("rp-a", nil), id)
	if err != nil {
		t.Fatal(err)
	}
	// The same request again (a retry after a crash): the same operation,
	// no second instance and no 409.
	op2, err := insert(t, c, "us-central1-a", instanceResource("rp-a", nil), id)
	if err != nil {
		t.Fatalf("retried insert: %v", err)
	}
	if op1.Name() != op2.Name() {
		t.Errorf("retried insert made operation %s, first %s", op2.Name(), op1.Name())
	}
	if err := op2.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(f.s.Instances()); n != 1 {
		t.Errorf("%d instances after a retried insert", n)
	}
	// Another request for the same name: 409 alreadyExists.
	_, err = insert(t, c, "us-central1-a", instanceResource("rp-a", nil), "1b6e8d0c-9d1f-5e2a-8b3c-4d5e6f708192")
	if httpCode(err) != 409 || reason(err) != "alreadyExists" {
		t.Errorf("name collision: %v", err)
	}
	// The same name in another zone is another instance.
	other := instanceResource("rp-a", nil)
	other.MachineType = proto.String("zones/us-central1-b/machineTypes/n2-standard-8")
	if _, err := insert(t, c, "us-central1-b", other, ""); err != nil {
		t.Errorf("same name in another zone: %v", err)
	}
	for _, bad := range []string{"not-a-uuid", "00000000-0000-0000-0000-000000000000"} {
		_, err = insert(t, c, "us-central1-a", instanceResource("rp-b", nil), bad)
		if httpCode(err) != 400 {
			t.Errorf("requestId %q: %v", bad, err)
		}
	}
}

func TestListFiltersAndPages(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.instances(t, f.impersonated(t, f.base(t), customerSA))
	zones := []string{"us-central1-a", "us-central1-b", "us-central1-c"}
	var want []string
	for i := 0; i < 7; i++ {
		z := zones[i%3]
		name := "rp-n" + string(rune('0'+i))
		inst := instanceResource(name, map[string]string{"rayplane-managed-by": "rayplane", "rayplane-cluster": "cls-" + string(rune('a'+i%2))})
		inst.MachineType = proto.String("zones/" + z + "/machineTypes/n2-standard-8")
		op, err := insert(t, c, z, inst, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := op.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			want = append(want, name)
		}
	}
	f.s.SetStatus("rp-n6", "STOPPING")
	before := len(f.s.Calls())
	got := aggregatedNames(t, c, `labels.rayplane-cluster = "cls-a" status = RUNNING`, 2)
	if strings.Join(got, ",") != "rp-n0,rp-n2,rp-n4" {
		t.Errorf("filtered pages: %v (want %v without the stopping one)", got, want)
	}
	pages := 0
	for _, call := range f.s.Calls()[before:] {
		if call.Method == "compute.instances.aggregatedList" {
			pages++
		}
	}
	if pages != 2 {
		t.Errorf("%d pages of 2 for 3 instances", pages)
	}
	if got := aggregatedNames(t, c, `(labels.rayplane-cluster != "cls-a") AND (labels.rayplane-managed-by = "rayplane")`, 0); strings.Join(got, ",") != "rp-n1,rp-n3,rp-n5" {
		t.Errorf("!= filter: %v", got)
	}
	// Zone list with pages.
	it := c.List(ctx, &computepb.ListInstancesRequest{Project: DefaultProject, Zone: "us-central1-a", MaxResults: proto.Uint32(1)})
	var zoneNames []string
	for {
		inst, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		zoneNames = append(zoneNames, inst.GetName())
	}
	if strings.Join(zoneNames, ",") != "rp-n0,rp-n3,rp-n6" {
		t.Errorf("zone list: %v", zoneNames)
	}
	// Filters the server cannot evaluate as Compute Engine would are 400.
	for _, bad := range []string{`labels.a = "b" OR labels.c = "d"`, `name eq rp-.*`, `labels.a:*`, `machineType = "x"`, `(labels.a = "b"`} {
		_, err := c.AggregatedList(ctx, &computepb.AggregatedListInstancesRequest{Project: DefaultProject, Filter: proto.String(bad)}).Next()
		if httpCode(err) != 400 {
			t.Errorf("filter %q: %v", bad, err)
		}
	}
	// A page token is bound to its filter; maxResults is at most 500.
	raw := f.rawClient(t, customerSA)
	resp := raw.do(t, "GET", "/compute/v1/projects/rayplane-test/aggregated/instances?maxResults=1&filter="+url.QueryEscape(`status = RUNNING`), "")
	var page struct {
		NextPageToken string `json:"nextPageToken"`
	}
	resp.decode(t, &page)
	if page.NextPageToken == "" {
		t.Fatal("no next page token")
	}
	if r := raw.do(t, "GET", "/compute/v1/projects/rayplane-test/aggregated/instances?pageToken="+page.NextPageToken, ""); r.code != 400 {
		t.Errorf("page token with another filter: %d %s", r.code, r.body)
	}
	if r := raw.do(t, "GET", "/compute/v1/projects/rayplane-test/aggregated/instances?maxResults=501", ""); r.code != 400 {
		t.Errorf("maxResults 501: %d %s", r.code, r.body)
	}
}
