package service

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

func ptr[T any](v T) *T { return &v }

// fieldsOf answers the field names of an invalid error, or "" for nil.
func fieldsOf(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	e, ok := err.(*api.Error)
	if !ok || e.Code != api.CodeInvalid {
		t.Fatalf("error %v is not an invalid *api.Error", err)
	}
	var names []string
	for _, f := range e.Fields {
		names = append(names, f.Field)
	}
	return strings.Join(names, ",")
}

func TestCheckComputeConfig(t *testing.T) {
	valid := func() api.ComputeConfigRequest {
		return api.ComputeConfigRequest{Name: "cc", ComputeConfigSpec: api.ComputeConfigSpec{
			HeadNode:     api.HeadNode{InstanceType: "local.small"},
			WorkerGroups: []api.WorkerGroup{{Name: "a", InstanceType: "local.small", MinNodes: 1, MaxNodes: 2}, {Name: "b", InstanceType: "m5.large", MaxNodes: 3, Market: "spot"}},
		}}
	}
	cases := []struct {
		name   string
		mutate func(*api.ComputeConfigRequest)
		fields string
	}{
		{"valid", func(*api.ComputeConfigRequest) {}, ""},
		{"no name", func(c *api.ComputeConfigRequest) { c.Name = "" }, "name"},
		{"bad name", func(c *api.ComputeConfigRequest) { c.Name = "-x" }, "name"},
		{"long name", func(c *api.ComputeConfigRequest) { c.Name = strings.Repeat("a", 64) }, "name"},
		{"no head type", func(c *api.ComputeConfigRequest) { c.HeadNode.InstanceType = "" }, "head_node.instance_type"},
		{"bad head type", func(c *api.ComputeConfigRequest) { c.HeadNode.InstanceType = "a b" }, "head_node.instance_type"},
		{"max below min", func(c *api.ComputeConfigRequest) { c.WorkerGroups[1].MinNodes = 4 }, "worker_groups[1].max_nodes"},
		{"negative min", func(c *api.ComputeConfigRequest) { c.WorkerGroups[0].MinNodes = -1 }, "worker_groups[0].min_nodes"},
		{"max too large", func(c *api.ComputeConfigRequest) { c.WorkerGroups[0].MaxNodes = 5000 }, "worker_groups[0].max_nodes"},
		{"unknown market", func(c *api.ComputeConfigRequest) { c.WorkerGroups[1].Market = "cheap" }, "worker_groups[1].market"},
		{"duplicate group", func(c *api.ComputeConfigRequest) { c.WorkerGroups[1].Name = "a" }, "worker_groups[1].name"},
		{"reserved group", func(c *api.ComputeConfigRequest) { c.WorkerGroups[0].Name = "head" }, "worker_groups[0].name"},
		{"group type", func(c *api.ComputeConfigRequest) { c.WorkerGroups[0].InstanceType = "" }, "worker_groups[0].instance_type"},
		{"negative max workers", func(c *api.ComputeConfigRequest) { c.MaxWorkers = ptr(-1) }, "max_workers"},
		{"max workers below mins", func(c *api.ComputeConfigRequest) { c.MaxWorkers = ptr(0) }, "max_workers"},
		{"negative idle timeout", func(c *api.ComputeConfigRequest) { c.WorkerIdleTimeoutSeconds = -5 }, "worker_idle_timeout_seconds"},
		{"negative idle termination", func(c *api.ComputeConfigRequest) { c.IdleTerminationSeconds = -1 }, "idle_termination_seconds"},
		{"negative uptime", func(c *api.ComputeConfigRequest) { c.MaximumUptimeSeconds = -1 }, "maximum_uptime_seconds"},
		{"negative speed", func(c *api.ComputeConfigRequest) { c.UpscalingSpeed = -1 }, "upscaling_speed"},
		{"zero cost cap", func(c *api.ComputeConfigRequest) { c.MaxHourlyCost = ptr(0.0) }, "max_hourly_cost"},
		{"several at once", func(c *api.ComputeConfigRequest) { c.Name = ""; c.WorkerGroups[0].MaxNodes = 0 }, "name,worker_groups[0].max_nodes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := valid()
			c.mutate(&req)
			if got := fieldsOf(t, CheckComputeConfig(&req)); got != c.fields {
				t.Fatalf("fields %q, want %q", got, c.fields)
			}
		})
	}
	req := valid()
	if err := CheckComputeConfig(&req); err != nil {
		t.Fatal(err)
	}
	if req.WorkerGroups[0].Market != api.MarketOnDemand || req.WorkerIdleTimeoutSeconds != 300 || req.UpscalingSpeed != 1 {
		t.Fatalf("defaults not applied: %+v", req)
	}
}

func TestCheckCloud(t *testing.T) {
	aws := func() api.CloudSpec {
		return api.CloudSpec{Name: "prod", Provider: "aws", Region: "us-east-1", StorageLocation: "s3://my-bucket/logs",
			AWS: &api.AWSCloud{RoleARN: "arn:aws:iam::123456789012:role/rayplane", SubnetIDs: []string{"subnet-0123456789abcdef0"}, ImageID: "ami-0123456789abcdef0"}}
	}
	gcp := func() api.CloudSpec {
		return validGCPSpec()
	}
	k8s := func() api.CloudSpec {
		return api.CloudSpec{Name: "k", Provider: "kubernetes", StorageLocation: "s3://bucket-k",
			Kubernetes: validKubernetesCloud("secret")}
	}
	local := func() api.CloudSpec { return api.CloudSpec{Name: "l", Provider: "local"} }
	cases := []struct {
		name   string
		spec   func() api.CloudSpec
		mutate func(*api.CloudSpec)
		fields string
	}{
		{"aws valid", aws, func(*api.CloudSpec) {}, ""},
		{"gcp valid", gcp, func(*api.CloudSpec) {}, ""},
		{"k8s valid", k8s, func(*api.CloudSpec) {}, ""},
		{"local valid", local, func(*api.CloudSpec) {}, ""},
		{"unknown provider", local, func(c *api.CloudSpec) { c.Provider = "azure" }, "provider"},
		{"aws no region", aws, func(c *api.CloudSpec) { c.Region = "" }, "region"},
		{"aws bad region", aws, func(c *api.CloudSpec) { c.Region = "US East" }, "region"},
		{"aws no block", aws, func(c *api.CloudSpec) { c.AWS = nil }, "aws"},
		{"aws bad arn", aws, func(c *api.CloudSpec) { c.AWS.RoleARN = "arn:aws:iam::123:user/x" }, "aws.role_arn"},
		{"aws full", aws, func(c *api.CloudSpec) {
			c.AWS.SubnetIDs = []string{"subnet-0123456789abcdef0", "subnet-89abcdef"}
			c.AWS.SecurityGroupIDs = []string{"sg-0123456789abcdef0"}
			c.AWS.InstanceProfileARN = "arn:aws:iam::123456789012:instance-profile/nodes/rayplane-node"
		}, ""},
		{"aws no subnets", aws, func(c *api.CloudSpec) { c.AWS.SubnetIDs = nil }, "aws.subnet_ids"},
		{"aws bad second subnet", aws, func(c *api.CloudSpec) {
			c.AWS.SubnetIDs = []string{"subnet-0123456789abcdef0", "subnet-XYZ", "subnet-0123456789abcdef0"}
		}, "aws.subnet_ids[1],aws.subnet_ids[2]"},
		{"aws 17 subnets", aws, func(c *api.CloudSpec) {
			c.AWS.SubnetIDs = nil
			for i := range 17 {
				c.AWS.SubnetIDs = append(c.AWS.SubnetIDs, fmt.Sprintf("subnet-%08x", i))
			}
		}, "aws.subnet_ids"},
		{"aws bad security group", aws, func(c *api.CloudSpec) { c.AWS.SecurityGroupIDs = []string{"sg-1"} }, "aws.security_group_ids[0]"},
		{"aws 6 security groups", aws, func(c *api.CloudSpec) {
			c.AWS.SecurityGroupIDs = []string{"sg-00000001", "sg-00000002", "sg-00000003", "sg-00000004", "sg-00000005", "sg-00000006"}
		}, "aws.security_group_ids"},
		{"aws profile is a role", aws, func(c *api.CloudSpec) { c.AWS.InstanceProfileARN = "arn:aws:iam::123456789012:role/x" }, "aws.instance_profile_arn"},
		{"aws no image", aws, func(c *api.CloudSpec) { c.AWS.ImageID = "" }, "aws.image_id"},
		{"aws bad image", aws, func(c *api.CloudSpec) { c.AWS.ImageID = "ami-x" }, "aws.image_id"},
		{"aws gs bucket", aws, func(c *api.CloudSpec) { c.StorageLocation = "gs://bucket-x" }, "storage_location"},
		{"aws no storage", aws, func(c *api.CloudSpec) { c.StorageLocation = "" }, "storage_location"},
		{"aws with gcp block", aws, func(c *api.CloudSpec) { c.GCP = gcp().GCP }, "gcp"},
		{"gcp no block", gcp, func(c *api.CloudSpec) { c.GCP = nil }, "gcp"},
		{"gcp bad provider path", gcp, func(c *api.CloudSpec) { c.GCP.WorkloadIdentityProvider = "pool" }, "gcp.workload_identity_provider"},
		{"gcp bad sa", gcp, func(c *api.CloudSpec) { c.GCP.ServiceAccount = "me@gmail.com" }, "gcp.service_account"},
		{"gcp with aws block", gcp, func(c *api.CloudSpec) { c.AWS = aws().AWS }, "aws"},
		{"k8s http", k8s, func(c *api.CloudSpec) { c.Kubernetes.APIServer = "http://k8s:6443" }, "kubernetes.api_server"},
		{"k8s namespace", k8s, func(c *api.CloudSpec) { c.Kubernetes.Namespace = "Ray_NS" }, "kubernetes.namespace"},
		{"k8s ca", k8s, func(c *api.CloudSpec) { c.Kubernetes.CACertPEM = "not pem" }, "kubernetes.ca_cert_pem"},
		{"local relative storage", local, func(c *api.CloudSpec) { c.StorageLocation = "logs" }, "storage_location"},
		{"local file url", local, func(c *api.CloudSpec) { c.StorageLocation = "file:///var/rayplane" }, ""},
		{"zero max nodes", local, func(c *api.CloudSpec) { c.Quotas.MaxNodes = ptr(0) }, "quotas.max_nodes"},
		{"negative vcpus", local, func(c *api.CloudSpec) { c.Quotas.MaxVCPUs = ptr(-2) }, "quotas.max_vcpus"},
		{"heartbeat too slow", local, func(c *api.CloudSpec) { c.Heartbeat.IntervalSeconds = 301 }, "heartbeat.interval_seconds"},
		{"heartbeat negative", local, func(c *api.CloudSpec) { c.Heartbeat.LostAfter = -1 }, "heartbeat.lost_after_intervals"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := c.spec()
			c.mutate(&spec)
			if got := fieldsOf(t, CheckCloud(&spec)); got != c.fields {
				t.Fatalf("fields %q, want %q", got, c.fields)
			}
		})
	}
}

func TestCheckCluster(t *testing.T) {
	now := time.Now()
	valid := func() api.ClusterRequest {
		return api.ClusterRequest{Name: "c", CloudID: NewID(PrefixCloud, now), ComputeConfigID: NewID(PrefixComputeConfig, now)}
	}
	cases := []struct {
		name   string
		mutate func(*api.ClusterRequest)
		fields string
	}{
		{"valid", func(*api.ClusterRequest) {}, ""},
		{"no cloud", func(c *api.ClusterRequest) { c.CloudID = "" }, "cloud_id"},
		{"cloud id of a cluster", func(c *api.ClusterRequest) { c.CloudID = NewID(PrefixCluster, now) }, "cloud_id"},
		{"bad config id", func(c *api.ClusterRequest) { c.ComputeConfigID = "cc_x" }, "compute_config_id"},
		{"negative version", func(c *api.ClusterRequest) { c.ComputeConfigVersion = -1 }, "compute_config_version"},
		{"bad desired", func(c *api.ClusterRequest) { c.DesiredState = "paused" }, "desired_state"},
		{"bad env name", func(c *api.ClusterRequest) { c.Runtime.Env = map[string]string{"1X": "y"} }, `runtime.env["1X"]`},
		{"empty command", func(c *api.ClusterRequest) { c.Runtime.HeadCmd = []string{} }, "runtime.head_command"},
		{"blank program", func(c *api.ClusterRequest) { c.Runtime.WorkerCmd = []string{""} }, "runtime.worker_command[0]"},
		{"bad ray version", func(c *api.ClusterRequest) { c.Runtime.RayVersion = "latest" }, "runtime.ray_version"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := valid()
			c.mutate(&req)
			if got := fieldsOf(t, CheckCluster(&req)); got != c.fields {
				t.Fatalf("fields %q, want %q", got, c.fields)
			}
		})
	}
}

func TestCheckToken(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name   string
		req    api.CreateTokenRequest
		fields string
	}{
		{"valid", api.CreateTokenRequest{Name: "ci", Role: api.RoleWriter, ExpiresAt: ptr(now.Add(time.Hour))}, ""},
		{"no role", api.CreateTokenRequest{Name: "ci"}, "role"},
		{"root role", api.CreateTokenRequest{Name: "ci", Role: "root"}, "role"},
		{"past expiry", api.CreateTokenRequest{Name: "ci", Role: api.RoleReader, ExpiresAt: ptr(now.Add(-time.Second))}, "expires_at"},
		{"bad name", api.CreateTokenRequest{Name: "a b", Role: api.RoleReader}, "name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := fieldsOf(t, CheckToken(&c.req, now)); got != c.fields {
				t.Fatalf("fields %q, want %q", got, c.fields)
			}
		})
	}
}

func TestIDs(t *testing.T) {
	now := time.Now()
	a := NewID(PrefixCluster, now)
	b := NewID(PrefixCluster, now.Add(time.Millisecond))
	if !ValidID(PrefixCluster, a) || ValidID(PrefixCloud, a) || KindOf(a) != PrefixCluster {
		t.Fatalf("id %s", a)
	}
	if !(a < b) {
		t.Fatalf("ids do not sort by time: %s >= %s", a, b)
	}
	secret, prefix := NewTokenSecret()
	if TokenPrefix(secret) != prefix || TokenPrefix(secret+"x") != "" || TokenPrefix("rpt_short_x") != "" {
		t.Fatalf("token prefix of %s", prefix)
	}
	if !TokenMatches(secret, HashToken(secret)) || TokenMatches(secret+"x", HashToken(secret)) {
		t.Fatal("token hash comparison")
	}
}

func TestIDsOrderWithinAMillisecond(t *testing.T) {
	now := time.Now()
	prev := NewID(PrefixAuditEvent, now)
	for range 1000 {
		id := NewID(PrefixAuditEvent, now)
		if id <= prev || !ValidID(PrefixAuditEvent, id) {
			t.Fatalf("%s does not follow %s", id, prev)
		}
		prev = id
	}
	// A clock that steps back does not break the order either.
	if id := NewID(PrefixAuditEvent, now.Add(-time.Second)); id <= prev {
		t.Fatalf("%s after a clock step back does not follow %s", id, prev)
	}
}

func TestCheckAWSPolicies(t *testing.T) {
	for _, c := range []struct {
		name   string
		req    api.AWSPoliciesRequest
		fields string
	}{
		{"minimal", api.AWSPoliciesRequest{ExternalID: NewExternalID()}, ""},
		{"full", api.AWSPoliciesRequest{ExternalID: "rayplane-x", NodeRoleARN: "arn:aws:iam::123456789012:role/node",
			StorageLocation: "s3://logs-bucket/x", Region: "eu-west-1", RoleARN: "arn:aws:iam::123456789012:role/path/rayplane"}, ""},
		{"bad role arn", api.AWSPoliciesRequest{ExternalID: "rayplane-x", RoleARN: "arn:aws:iam::123456789012:user/rayplane"}, "role_arn"},
		{"no external id", api.AWSPoliciesRequest{}, "external_id"},
		{"bad external id", api.AWSPoliciesRequest{ExternalID: `a"b`}, "external_id"},
		{"bad everything", api.AWSPoliciesRequest{ExternalID: "x", NodeRoleARN: "arn:aws:iam::123456789012:user/u",
			StorageLocation: "gs://logs-bucket", Region: "EU", RoleARN: "arn:aws:iam::1:role/x"}, "external_id,role_arn,node_role_arn,storage_location,region"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := fieldsOf(t, CheckAWSPolicies(&c.req)); got != c.fields {
				t.Fatalf("fields %q, want %q", got, c.fields)
			}
		})
	}
}

func TestAWSSettingsChangeVerifiesAgain(t *testing.T) {
	now := time.Now()
	spec := api.CloudSpec{Name: "prod", Provider: "aws", Region: "us-east-1", StorageLocation: "s3://my-bucket/logs",
		AWS: &api.AWSCloud{RoleARN: "arn:aws:iam::123456789012:role/rayplane", SubnetIDs: []string{"subnet-0123456789abcdef0"}, ImageID: "ami-0123456789abcdef0"}}
	old := NewCloud(spec, now)
	old.Status, old.StatusReason = api.CloudActive, ""
	for name, mutate := range map[string]func(a *api.CloudSpec){
		"subnets": func(c *api.CloudSpec) { c.AWS.SubnetIDs = []string{"subnet-0123456789abcdef1"} },
		"subnet order": func(c *api.CloudSpec) {
			c.AWS.SubnetIDs = []string{"subnet-0123456789abcdef1", "subnet-0123456789abcdef0"}
		},
		"security groups":  func(c *api.CloudSpec) { c.AWS.SecurityGroupIDs = []string{"sg-0123456789abcdef0"} },
		"instance profile": func(c *api.CloudSpec) { c.AWS.InstanceProfileARN = "arn:aws:iam::123456789012:instance-profile/n" },
		"image":            func(c *api.CloudSpec) { c.AWS.ImageID = "ami-0123456789abcdef1" },
		"role":             func(c *api.CloudSpec) { c.AWS.RoleARN = "arn:aws:iam::123456789012:role/other" },
		"storage":          func(c *api.CloudSpec) { c.StorageLocation = "s3://other-bucket" },
		"nothing":          func(c *api.CloudSpec) {},
		"quotas only":      func(c *api.CloudSpec) { c.Quotas.MaxNodes = ptr(3) },
	} {
		t.Run(name, func(t *testing.T) {
			next := spec
			a := *spec.AWS
			next.AWS = &a
			mutate(&next)
			c, err := ReplaceCloud(old, next, now)
			if err != nil {
				t.Fatal(err)
			}
			want := api.CloudVerifying
			if name == "nothing" || name == "quotas only" {
				want = api.CloudActive
			}
			if c.Status != want {
				t.Errorf("status %s, want %s", c.Status, want)
			}
			if c.AWS.ExternalID != old.AWS.ExternalID {
				t.Errorf("external id changed")
			}
		})
	}
}
