package gcp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/googleapi"
	"google.golang.org/protobuf/proto"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/bootscript"
)

func goodConfig() Config {
	return Config{
		OrgID: "org_1", CloudID: "cld_1", Region: "us-central1",
		Cloud: api.GCPCloud{
			ServiceAccount: "rayplane@proj-123.iam.gserviceaccount.com",
			ProjectID:      "proj-123",
			Zones:          []string{"us-central1-a", "us-central1-b"},
			Image:          "projects/proj-123/global/images/rayplane-1",
			MachineTypes:   []api.GCPMachineType{{Name: "n2-standard-4", PricePerHour: 0.19}},
		},
	}
}

func TestNewRefusesIncompleteClouds(t *testing.T) {
	d, err := New(goodConfig())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if d.network != "projects/proj-123/global/networks/default" || d.subnetwork != "" {
		t.Fatalf("network %q subnetwork %q", d.network, d.subnetwork)
	}
	for name, mut := range map[string]func(*Config){
		"service account":        func(c *Config) { c.Cloud.ServiceAccount = "nobody" },
		"node service account":   func(c *Config) { c.Cloud.NodeServiceAccount = "x y@z" },
		"project":                func(c *Config) { c.Cloud.ProjectID = "P" },
		"region":                 func(c *Config) { c.Region = "" },
		"no zones":               func(c *Config) { c.Cloud.Zones = nil },
		"zone of another region": func(c *Config) { c.Cloud.Zones = []string{"europe-west1-b"} },
		"zone":                   func(c *Config) { c.Cloud.Zones = []string{"us-central1"} },
		"image":                  func(c *Config) { c.Cloud.Image = "rayplane-1" },
		"no machine types":       func(c *Config) { c.Cloud.MachineTypes = nil },
		"machine type name":      func(c *Config) { c.Cloud.MachineTypes = []api.GCPMachineType{{Name: "N2 standard"}} },
		"negative price": func(c *Config) {
			c.Cloud.MachineTypes = []api.GCPMachineType{{Name: "n2-standard-4", PricePerHour: -1}}
		},
		"twice": func(c *Config) {
			c.Cloud.MachineTypes = []api.GCPMachineType{{Name: "n2-standard-4"}, {Name: "n2-standard-4"}}
		},
		"network":                 func(c *Config) { c.Cloud.Network = "projects/p/networks/x" },
		"subnetwork of elsewhere": func(c *Config) { c.Cloud.Subnetwork = "projects/proj-123/regions/europe-west1/subnetworks/s" },
		"provider":                func(c *Config) { c.Cloud.WorkloadIdentityProvider = "pools/x" },
		"provider without a token": func(c *Config) {
			c.Cloud.WorkloadIdentityProvider = "projects/1/locations/global/workloadIdentityPools/p/providers/x"
		},
		"endpoint":             func(c *Config) { c.Endpoint = "127.0.0.1:80" },
		"endpoint with a path": func(c *Config) { c.Endpoint = "https://x/compute" },
	} {
		c := goodConfig()
		mut(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted %+v", name, c.Cloud)
		}
	}
	c := goodConfig()
	c.Cloud.Network, c.Cloud.Subnetwork = "vpc-1", "sub-1"
	if d, err := New(c); err != nil || d.network != "projects/proj-123/global/networks/vpc-1" ||
		d.subnetwork != "projects/proj-123/regions/us-central1/subnetworks/sub-1" {
		t.Fatalf("New with names: %v, %q, %q", err, d.network, d.subnetwork)
	}
}

func TestInstanceName(t *testing.T) {
	for id, want := range map[string]string{
		"nod_01hx3k9q8a7b6c5d4e3f2g1h0j": "rp-nod-01hx3k9q8a7b6c5d4e3f2g1h0j",
		"NOD_ABC":                        "rp-nod-abc",
	} {
		if got := InstanceName(id); got != want || !resourceName.MatchString(got) {
			t.Errorf("InstanceName(%q) = %q, want %q", id, got, want)
		}
	}
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestRequestID(t *testing.T) {
	seen := map[string]bool{}
	for _, key := range []string{"nod_1", strings.Repeat("ñ", 100), ""} {
		for _, zone := range []string{"us-central1-a", "us-central1-b"} {
			for _, m := range []string{api.MarketOnDemand, api.MarketSpot} {
				for attempt := range maxAttempts {
					id := requestID(key, zone, m, attempt)
					if !uuidPattern.MatchString(id) || id == "00000000-0000-0000-0000-000000000000" {
						t.Fatalf("requestID %q is not a version 5 UUID", id)
					}
					if seen[id] {
						t.Fatalf("requestID %q twice", id)
					}
					seen[id] = true
					if requestID(key, zone, m, attempt) != id {
						t.Fatal("requestID is not deterministic")
					}
				}
			}
		}
	}
	// prefer_spot's standard attempt is on-demand's request.
	if requestID("k", "z", api.MarketPreferSpot, 0) != requestID("k", "z", api.MarketOnDemand, 0) {
		t.Fatal("a non-spot market's request id differs from on-demand's")
	}
}

func TestLabels(t *testing.T) {
	d, err := New(goodConfig())
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.nodeLabels(cloud.LaunchRequest{NodeID: "nod_1", Tags: map[string]string{
		cloud.TagManagedBy: "someone-else", cloud.TagCluster: "cls_1", cloud.TagGroup: "workers", cloud.TagNode: "nod_other"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{cloud.TagManagedBy: cloud.ManagedByValue, cloud.TagCluster: "cls_1", cloud.TagGroup: "workers",
		cloud.TagNode: "nod_1", cloud.TagCloud: "cld_1", TagOrganization: "org_1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("labels %v, want %v", got, want)
	}
	for _, bad := range []map[string]string{
		{"Rayplane-Cluster": "x"}, {"rayplane-cluster": "Cls_1"}, {"rayplane-cluster": "a b"},
		{"rayplane-cluster": strings.Repeat("a", 64)}, {"1x": "y"}, {"": "y"},
	} {
		if _, err := labelsOf(bad); err == nil {
			t.Errorf("labelsOf(%v) accepted", bad)
		}
		if _, err := d.list(context.Background(), nil, bad); cloud.KindOf(err) != cloud.Invalid {
			t.Errorf("list(%v) = %v, want an invalid error", bad, err)
		}
	}
	if f := filterOf(map[string]string{"b": "2", "a": "1"}); f != `labels.a = "1" AND labels.b = "2"` {
		t.Fatalf("filter %q", f)
	}
}

func TestParseInstanceID(t *testing.T) {
	if z, n, err := parseInstanceID(instanceID("us-central1-a", "rp-nod-1")); err != nil || z != "us-central1-a" || n != "rp-nod-1" {
		t.Fatalf("parseInstanceID = %q %q %v", z, n, err)
	}
	for _, bad := range []string{"", "rp-nod-1", "zones/us-central1-a/instances/", "zones/../instances/x",
		"zones/us-central1-a/instances/x/y", "projects/p/zones/us-central1-a/instances/x", "zones/us-central1-a/instances/X"} {
		if _, _, err := parseInstanceID(bad); err == nil {
			t.Errorf("parseInstanceID(%q) accepted", bad)
		}
	}
}

func TestParseBootstrap(t *testing.T) {
	payload := []byte(`{"bootstrap_token":"rpb_t"}`)
	item := func(k, v string) *computepb.Items {
		return &computepb.Items{Key: proto.String(k), Value: proto.String(v)}
	}
	inst := &computepb.Instance{Metadata: &computepb.Metadata{Items: []*computepb.Items{
		item("other", "x"), item(MetadataStartupScript, bootscript.Build(payload))}}}
	if got, err := ParseBootstrap(inst); err != nil || string(got) != string(payload) {
		t.Fatalf("ParseBootstrap = %q, %v", got, err)
	}
	for name, items := range map[string][]*computepb.Items{
		"none":    nil,
		"other":   {item(MetadataStartupScript, "#!/bin/sh\nid\n")},
		"twice":   {item(MetadataStartupScript, bootscript.Build(payload)), item(MetadataStartupScript, bootscript.Build(payload))},
		"no such": {item("startup-script-url", "gs://x")},
	} {
		if _, err := ParseBootstrap(&computepb.Instance{Metadata: &computepb.Metadata{Items: items}}); err == nil {
			t.Errorf("%s: ParseBootstrap accepted", name)
		}
	}
}

func TestKindOf(t *testing.T) {
	httpErr := func(code int, reason string) error {
		ge := &googleapi.Error{Code: code, Message: "m"}
		if reason != "" {
			ge.Errors = []googleapi.ErrorItem{{Reason: reason, Message: "m"}}
		}
		if ae, ok := apierror.FromError(ge); ok {
			return fmt.Errorf("call: %w", ae)
		}
		return ge
	}
	op := func(status int32, codes ...string) error {
		o := &computepb.Operation{Name: proto.String("operation-1"), Error: &computepb.Error{}}
		if status != 0 {
			o.HttpErrorStatusCode = proto.Int32(status)
		}
		for _, c := range codes {
			o.Error.Errors = append(o.Error.Errors, &computepb.Errors{Code: proto.String(c), Message: proto.String("m")})
		}
		return newOpError(o)
	}
	cases := []struct {
		name string
		err  error
		want cloud.Kind
	}{
		{"pool exhausted", op(503, "ZONE_RESOURCE_POOL_EXHAUSTED"), cloud.Capacity},
		{"pool exhausted with details", op(503, "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"), cloud.Capacity},
		{"stockout", op(0, "STOCKOUT"), cloud.Capacity},
		{"quota", op(403, "QUOTA_EXCEEDED"), cloud.Quota},
		{"op not found", op(404, "RESOURCE_NOT_FOUND"), cloud.Invalid},
		{"op forbidden", op(403, "SOMETHING"), cloud.Auth},
		{"op server", op(500, "SOMETHING"), cloud.Transient},
		{"op bad", op(400, "SOMETHING"), cloud.Invalid},
		{"http 403", httpErr(403, "forbidden"), cloud.Auth},
		{"http 403 no reason", httpErr(403, ""), cloud.Auth},
		{"http 401", httpErr(401, ""), cloud.Auth},
		{"http 403 quota of a read", httpErr(403, "quotaExceeded"), cloud.Transient},
		{"http 429 quota of a read", httpErr(429, "quotaExceeded"), cloud.Transient},
		{"http 403 rate", httpErr(403, "rateLimitExceeded"), cloud.Transient},
		{"http 429", httpErr(429, ""), cloud.Transient},
		{"http 500", httpErr(500, "backendError"), cloud.Transient},
		{"http 503", httpErr(503, ""), cloud.Transient},
		{"http 404", httpErr(404, "notFound"), cloud.Invalid},
		{"http 400", httpErr(400, "invalid"), cloud.Invalid},
		{"impersonation 403", &identityError{err: errors.New("impersonate: status code 403: {}")}, cloud.Auth},
		{"impersonation 503", &identityError{err: errors.New("impersonate: status code 503: {}")}, cloud.Transient},
		{"impersonation other", &identityError{err: errors.New("no credentials")}, cloud.Auth},
		{"impersonation deadline", &identityError{err: context.DeadlineExceeded}, cloud.Transient},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), cloud.Transient},
		{"refused", errors.New("dial tcp: connection refused"), cloud.Transient},
	}
	for _, c := range cases {
		if got := kindOf(c.err); got != c.want {
			t.Errorf("%s: kindOf(%v) = %s, want %s", c.name, c.err, got, c.want)
		}
	}
	// An insert's own quotaExceeded is the project's quota.
	for _, c := range []struct {
		err  error
		want cloud.Kind
	}{
		{httpErr(403, "quotaExceeded"), cloud.Quota},
		{httpErr(429, "quotaExceeded"), cloud.Quota},
		{httpErr(429, "rateLimitExceeded"), cloud.Transient},
		{httpErr(400, "invalid"), cloud.Invalid},
		{op(403, "QUOTA_EXCEEDED"), cloud.Quota},
	} {
		if got := insertKind(c.err); got != c.want {
			t.Errorf("insertKind(%v) = %s, want %s", c.err, got, c.want)
		}
	}
	if !isAlreadyExists(httpErr(http.StatusConflict, "alreadyExists")) || isAlreadyExists(httpErr(http.StatusConflict, "resourceInUseByAnotherResource")) {
		t.Error("isAlreadyExists")
	}
}

func TestRetryer(t *testing.T) {
	quota := &googleapi.Error{Code: 429, Errors: []googleapi.ErrorItem{{Reason: "quotaExceeded"}}}
	cases := []struct {
		err   error
		kind  func(error) cloud.Kind
		retry bool
	}{
		{&googleapi.Error{Code: 503}, kindOf, true},
		{&googleapi.Error{Code: 429}, kindOf, true},
		{&googleapi.Error{Code: 500, Errors: []googleapi.ErrorItem{{Reason: "backendError"}}}, kindOf, true},
		{&googleapi.Error{Code: 503, Errors: []googleapi.ErrorItem{{Reason: "ZONE_RESOURCE_POOL_EXHAUSTED"}}}, kindOf, false},
		{quota, kindOf, true},
		{quota, insertKind, false},
		{&googleapi.Error{Code: 403, Errors: []googleapi.ErrorItem{{Reason: "rateLimitExceeded"}}}, insertKind, true},
		{&googleapi.Error{Code: 403}, kindOf, false},
		{&googleapi.Error{Code: 404}, kindOf, false},
		{errors.New("dial tcp: refused"), kindOf, false},
	}
	for _, c := range cases {
		r := &transientRetryer{kind: c.kind}
		n := 0
		for ; n < 10; n++ {
			if _, ok := r.Retry(c.err); !ok {
				break
			}
		}
		if want := map[bool]int{true: maxRetries, false: 0}[c.retry]; n != want {
			t.Errorf("%v retried %d times, want %d", c.err, n, want)
		}
	}
}

func TestMachineTypeAnswers(t *testing.T) {
	mt := func(cpus, mb int32, gpus ...int32) *computepb.MachineType {
		t := &computepb.MachineType{Name: proto.String("x"), GuestCpus: proto.Int32(cpus), MemoryMb: proto.Int32(mb)}
		for _, g := range gpus {
			t.Accelerators = append(t.Accelerators, &computepb.Accelerators{GuestAcceleratorCount: proto.Int32(g)})
		}
		return t
	}
	if it, ok := machineType(mt(8, 32768, 1, 1), 1.5, 0.5); !ok || it.CPUs != 8 || it.MemoryBytes != 32<<30 || it.GPUs != 2 || it.PricePerHour != 1.5 || it.SpotPrice != 0.5 {
		t.Fatalf("machineType = %+v, %t", it, ok)
	}
	for _, bad := range []*computepb.MachineType{mt(0, 1024), mt(-1, 1024), mt(1<<13, 1024), mt(2, 0), mt(2, -5), mt(2, 1024, -1), mt(2, 1024, 65), mt(2, 1024, 40, 40), {}} {
		if it, ok := machineType(bad, 1, 0); ok {
			t.Errorf("machineType(%v) = %+v", bad, it)
		}
	}
}
