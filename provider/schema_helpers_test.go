package provider

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

// TestSchemas has the framework check every schema (write-only rules,
// defaults on optional+computed attributes…) without running Terraform.
func TestSchemas(t *testing.T) {
	srv := providerserver.NewProtocol6(New("test")())()
	resp, err := srv.GetProviderSchema(context.Background(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range resp.Diagnostics {
		t.Errorf("%s: %s: %s", d.Severity, d.Summary, d.Detail)
	}
	// Exactly what Resources and DataSources list, each once.
	wantResources := []string{"rayplane_api_token", "rayplane_cloud", "rayplane_cloud_verification", "rayplane_cluster", "rayplane_compute_config"}
	if got := slices.Sorted(maps.Keys(resp.ResourceSchemas)); !slices.Equal(got, wantResources) {
		t.Errorf("resources %v, want %v", got, wantResources)
	}
	wantDataSources := []string{"rayplane_aws_policies", "rayplane_cloud", "rayplane_cluster", "rayplane_gcp_role", "rayplane_instance_types", "rayplane_kubernetes_role"}
	if got := slices.Sorted(maps.Keys(resp.DataSourceSchemas)); !slices.Equal(got, wantDataSources) {
		t.Errorf("data sources %v, want %v", got, wantDataSources)
	}
	wantEphemeral := []string{"rayplane_cluster_access_token"}
	if got := slices.Sorted(maps.Keys(resp.EphemeralResourceSchemas)); !slices.Equal(got, wantEphemeral) {
		t.Errorf("ephemeral resources %v, want %v", got, wantEphemeral)
	}
}

// fieldRefused reports whether the server's check names field.
func fieldRefused(err error, field string) bool {
	e, ok := err.(*api.Error)
	return ok && slices.ContainsFunc(e.Fields, func(f api.FieldError) bool { return f.Field == field })
}

// TestPatternsAgreeWithServer: the plan-time patterns are copies of
// service/validate.go's; they must accept and refuse the same values.
func TestPatternsAgreeWithServer(t *testing.T) {
	cases := []struct {
		field   string
		accepts func(string) bool
		values  []string
	}{
		{"name", namePattern.MatchString, []string{"a", "A-1.b_c", "-a", "", "has space", string(make([]byte, 64))}},
		{"aws.role_arn", roleARNPattern.MatchString, []string{
			"arn:aws:iam::123456789012:role/x", "arn:aws-us-gov:iam::123456789012:role/a/b", "arn:aws:iam::1234:role/x",
			"arn:aws:iam::123456789012:user/x",
		}},
		{"aws.subnet_ids[0]", api.AWSSubnetIDPattern.MatchString, []string{
			"subnet-0123456789abcdef0", "subnet-01234567", "subnet-0123456", "subnet-0123456789ABCDEF0", "subnet-0123456789abcdef01", "sg-01234567",
		}},
		{"aws.security_group_ids[0]", api.AWSSecurityGroupIDPattern.MatchString, []string{
			"sg-0123456789abcdef0", "sg-01234567", "sg-1", "subnet-01234567", "sg-0123456789abcdefg",
		}},
		{"aws.image_id", api.AWSImageIDPattern.MatchString, []string{"ami-0123456789abcdef0", "ami-89abcdef", "ami-x", "", "AMI-89abcdef"}},
		{"aws.instance_profile_arn", api.AWSInstanceProfileARNPattern.MatchString, []string{
			"arn:aws:iam::123456789012:instance-profile/n", "arn:aws:iam::123456789012:instance-profile/p/n",
			"arn:aws:iam::123456789012:role/n", "arn:aws:iam::1:instance-profile/n",
		}},
		{"region", regionPattern.MatchString, []string{"us-east-1", "US-EAST-1", "-x"}},
		{"gcp.workload_identity_provider", wifProviderPattern.MatchString, []string{
			"projects/123/locations/global/workloadIdentityPools/pool-1/providers/prov-1",
			"projects/abc/locations/global/workloadIdentityPools/pool-1/providers/prov-1",
			"projects/123/locations/global/workloadIdentityPools/p/providers/prov-1",
		}},
		{"gcp.service_account", gcpSAPattern.MatchString, []string{
			"rayplane@my-project.iam.gserviceaccount.com", "ab@my-project.iam.gserviceaccount.com", "rayplane@gmail.com",
		}},
		{"kubernetes.namespace", dnsLabelPattern.MatchString, []string{"ray", "ray-1", "Ray", "-ray", "ray-"}},
	}
	for _, c := range cases {
		for _, v := range c.values {
			spec := api.CloudSpec{Name: "n", Provider: api.ProviderAWS, Region: "r", StorageLocation: "s3://bucket",
				AWS: &api.AWSCloud{RoleARN: "arn:aws:iam::123456789012:role/x", SubnetIDs: []string{"subnet-0123456789abcdef0"}, ImageID: "ami-0123456789abcdef0"}}
			switch c.field {
			case "name":
				spec.Name = v
			case "aws.role_arn":
				spec.AWS.RoleARN = v
			case "aws.subnet_ids[0]":
				spec.AWS.SubnetIDs = []string{v}
			case "aws.security_group_ids[0]":
				spec.AWS.SecurityGroupIDs = []string{v}
			case "aws.image_id":
				spec.AWS.ImageID = v
			case "aws.instance_profile_arn":
				spec.AWS.InstanceProfileARN = v
			case "region":
				spec.Region = v
			case "gcp.workload_identity_provider", "gcp.service_account":
				spec.Provider, spec.AWS, spec.StorageLocation = api.ProviderGCP, nil, "gs://bucket"
				spec.GCP = testGCPCloud()
				if c.field == "gcp.service_account" {
					spec.GCP.ServiceAccount = v
				} else {
					spec.GCP.WorkloadIdentityProvider = v
				}
			case "kubernetes.namespace":
				spec.Provider, spec.AWS, spec.Region = api.ProviderKubernetes, nil, ""
				spec.Kubernetes = &api.KubernetesCloud{APIServer: "https://k8s", Namespace: v}
			}
			serverOK := !fieldRefused(service.CheckCloud(&spec), c.field)
			if ok := c.accepts(v); ok != serverOK {
				t.Errorf("%s %q: provider accepts %v, server accepts %v", c.field, v, ok, serverOK)
			}
		}
	}
	for _, v := range []string{"local.small", "m5.2xlarge", "", ".x", string(make([]byte, 65))} {
		req := api.ComputeConfigRequest{Name: "n", ComputeConfigSpec: api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: v}}}
		serverOK := !fieldRefused(service.CheckComputeConfig(&req), "head_node.instance_type")
		if ok := instanceTypePattern.MatchString(v); ok != serverOK {
			t.Errorf("instance type %q: provider accepts %v, server accepts %v", v, ok, serverOK)
		}
	}
}

func TestStorageLocationAgreesWithServer(t *testing.T) {
	for _, c := range []struct{ provider, loc string }{
		{api.ProviderLocal, ""}, {api.ProviderLocal, "/abs"}, {api.ProviderLocal, "file:///abs"}, {api.ProviderLocal, "rel"},
		{api.ProviderLocal, "file://rel"}, {api.ProviderLocal, "file://a/../.."}, {api.ProviderLocal, "file://"},
		{api.ProviderAWS, ""}, {api.ProviderAWS, "s3://bucket/p"}, {api.ProviderAWS, "gs://bucket"}, {api.ProviderAWS, "s3://B"},
		{api.ProviderGCP, "gs://bucket"}, {api.ProviderGCP, "s3://bucket"},
		{api.ProviderKubernetes, ""}, {api.ProviderKubernetes, "gs://bucket"}, {api.ProviderKubernetes, "/abs"},
		{api.ProviderAWS, "s3://bucket/../x"}, {api.ProviderAWS, "s3://192.168.1.1/x"}, {api.ProviderAWS, "s3://xn--bucket"},
		{api.ProviderAWS, "s3://bucket//x"}, {api.ProviderAWS, "s3://bucket/x?y"}, {api.ProviderAWS, "s3://my_bucket"},
		{api.ProviderGCP, "gs://my_bucket/x"}, {api.ProviderGCP, "gs://goog-x"}, {api.ProviderGCP, "gs://bucket/a%2Fb"},
	} {
		spec := api.CloudSpec{Name: "n", Provider: c.provider, Region: "r", StorageLocation: c.loc}
		switch c.provider {
		case api.ProviderAWS:
			spec.AWS = &api.AWSCloud{RoleARN: "arn:aws:iam::123456789012:role/x", SubnetIDs: []string{"subnet-0123456789abcdef0"}, ImageID: "ami-0123456789abcdef0"}
		case api.ProviderGCP:
			spec.GCP = testGCPCloud()
		case api.ProviderKubernetes:
			spec.Kubernetes = &api.KubernetesCloud{APIServer: "https://k8s", Namespace: "ray"}
		}
		serverOK := !fieldRefused(service.CheckCloud(&spec), "storage_location")
		if ok := storageLocationProblem(c.provider, c.loc, c.loc == "") == ""; ok != serverOK {
			t.Errorf("%s storage %q: provider accepts %v, server accepts %v", c.provider, c.loc, ok, serverOK)
		}
	}
}

func TestExpiryAgreesWithServer(t *testing.T) {
	check := rfc3339Validator().(checkStringFunc).check
	for _, v := range []string{
		"2199-12-31T23:59:59Z", "2200-01-01T00:00:00Z", "2200-01-01T00:00:00.000000001Z", "2199-12-31T23:59:59.999999999Z",
		"2199-12-31T23:59:59.9999999999Z", "2199-12-31T23:00:00-02:00", "2263-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
		"2030-01-02T15:04:05+01:00", "2030-01-02 15:04:05Z",
	} {
		req := api.CreateTokenRequest{Name: "t", Role: api.RoleReader}
		if tm, err := time.Parse(time.RFC3339Nano, v); err == nil {
			req.ExpiresAt = &tm
		}
		// What the server cannot parse never reaches it as a time, and its
		// decoder refuses more than nine fractional digits (checkBody): the
		// provider must refuse both itself.
		serverOK := req.ExpiresAt != nil && !fieldRefused(service.CheckToken(&req, time.Now()), "expires_at") &&
			!strings.Contains(v, ".9999999999")
		if ok := check(v) == ""; ok != serverOK {
			t.Errorf("expires_at %q: provider accepts %v, server accepts %v", v, ok, serverOK)
		}
	}
}
