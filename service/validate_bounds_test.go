package service

import (
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// reasonOf answers the reason given for field, or "" when there is none.
func reasonOf(t *testing.T, err error, field string) string {
	t.Helper()
	e, ok := err.(*api.Error)
	if err != nil && !ok {
		t.Fatalf("error %v is not an *api.Error", err)
	}
	if e == nil {
		return ""
	}
	for _, f := range e.Fields {
		if f.Field == field {
			return f.Reason
		}
	}
	return ""
}

// TestCloudStorageLocations: aws takes s3:// URLs, gcp gs:// URLs,
// kubernetes either, each with a bucket named by that cloud's rules and a
// clean prefix; the reason says what is wrong.
func TestCloudStorageLocations(t *testing.T) {
	specs := map[string]func(loc string) api.CloudSpec{
		"aws": func(loc string) api.CloudSpec {
			return api.CloudSpec{Name: "a", Provider: "aws", Region: "us-east-1", StorageLocation: loc, AWS: &api.AWSCloud{RoleARN: "arn:aws:iam::123456789012:role/r", SubnetIDs: []string{"subnet-0123456789abcdef0"}, ImageID: "ami-0123456789abcdef0"}}
		},
		"gcp": func(loc string) api.CloudSpec {
			spec := validGCPSpec()
			spec.StorageLocation = loc
			return spec
		},
		"kubernetes": func(loc string) api.CloudSpec {
			return api.CloudSpec{Name: "k", Provider: "kubernetes", StorageLocation: loc, Kubernetes: validKubernetesCloud("")}
		},
	}
	long := strings.Repeat("p/", api.MaxStoragePrefixLen/2)
	cases := []struct {
		provider, loc, reason string // reason "" means valid
	}{
		{"aws", "s3://my-bucket", ""},
		{"aws", "s3://my-bucket/logs/ray", ""},
		{"aws", "s3://logs.example.com/dt=2030-01-01/run_1", ""},
		{"aws", "s3://abc/" + long[:len(long)-1], ""},
		{"aws", "", "is required"},
		{"aws", "gs://my-bucket", "like s3://bucket/prefix"},
		{"aws", "S3://my-bucket", "like s3://bucket/prefix"},
		{"aws", "s3:/my-bucket", "like s3://bucket/prefix"},
		{"aws", "https://my-bucket.s3.amazonaws.com", "like s3://bucket/prefix"},
		{"aws", "s3://ab", "must be 3-63 characters"},
		{"aws", "s3://" + strings.Repeat("a", 64), "must be 3-63 characters"},
		{"aws", "s3://My-Bucket", "lower case letters, digits, '.' and '-'"},
		{"aws", "s3://my_bucket", "lower case letters, digits, '.' and '-'"},
		{"aws", "s3://user@bucket", "lower case letters"},
		{"aws", "s3://bucket:443/x", "lower case letters"},
		{"aws", "s3://-bucket", "start and end with a letter or digit"},
		{"aws", "s3://bucket./x", "start and end with a letter or digit"},
		{"aws", "s3://my..bucket", `must not contain ".."`},
		{"aws", "s3://192.168.5.4", "must not be an IP address"},
		{"aws", "s3://xn--bucket", `must not start with "xn--"`},
		{"aws", "s3://sthree-bucket", `must not start with "sthree-"`},
		{"aws", "s3://bucket-s3alias", `must not end with "-s3alias"`},
		{"aws", "s3://bucket/", "no empty segment"},
		{"aws", "s3://bucket//logs", "no empty segment"},
		{"aws", "s3://bucket/logs/", "no empty segment"},
		{"aws", "s3://bucket/../other", `no "." or ".." segment`},
		{"aws", "s3://bucket/a/./b", `no "." or ".." segment`},
		{"aws", "s3://bucket/a/..", `no "." or ".." segment`},
		{"aws", "s3://bucket/a?x=1", "without a query or fragment"},
		{"aws", "s3://bucket/a#x", "without a query or fragment"},
		{"aws", "s3://bucket/a%2F..", "letters, digits"},
		{"aws", "s3://bucket/a b", "letters, digits"},
		{"aws", "s3://bucket/caf\u00e9", "letters, digits"},
		{"aws", "s3://bucket/a\x00", "letters, digits"},
		{"aws", "s3://bucket/a\\b", "letters, digits"},
		{"aws", "s3://abc/" + long + "p", "must be at most 512 characters"},
		{"gcp", "gs://my_bucket-1", ""},
		{"gcp", "gs://logs.example.com/ray", ""},
		{"gcp", "gs://" + strings.Repeat("a", 63) + "." + strings.Repeat("b", 63), ""},
		{"gcp", "s3://my-bucket", "like gs://bucket/prefix"},
		{"gcp", "gs://" + strings.Repeat("a", 64), "must be 3-63 characters (up to 222 with dots)"},
		{"gcp", "gs://" + strings.Repeat("a", 64) + ".com", "at most 63 characters between dots"},
		{"gcp", "gs://_bucket", "start and end with a letter or digit"},
		{"gcp", "gs://Bucket", "lower case letters, digits, '.', '-' and '_'"},
		{"gcp", "gs://10.0.0.1", "must not be an IP address"},
		{"gcp", "gs://goog-bucket", `must not start with "goog"`},
		{"gcp", "gs://my-google-logs", `must not contain "google"`},
		{"gcp", "gs://my-g00gle-logs", `must not contain "google"`},
		{"gcp", "gs://bucket/a//b", "no empty segment"},
		{"kubernetes", "s3://my-bucket/k8s", ""},
		{"kubernetes", "gs://my_bucket/k8s", ""},
		{"kubernetes", "", "is required: a bucket URL like s3://bucket/prefix or gs://bucket/prefix"},
		{"kubernetes", "s3://my_bucket", "lower case letters, digits, '.' and '-'"},
		{"kubernetes", "file:///var/logs", "like s3://bucket/prefix or gs://bucket/prefix"},
		{"kubernetes", "gs://bucket/../x", `no "." or ".." segment`},
	}
	for _, c := range cases {
		t.Run(c.provider+" "+c.loc[:min(len(c.loc), 40)], func(t *testing.T) {
			spec := specs[c.provider](c.loc)
			err := CheckCloud(&spec)
			got := reasonOf(t, err, "storage_location")
			switch {
			case c.reason == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.reason != "" && !strings.Contains(got, c.reason):
				t.Fatalf("storage_location reason %q, want one with %q (error %v)", got, c.reason, err)
			}
		})
	}
}

// TestTextFieldsRefuseNULAndInvalidUTF8: the checks refuse NUL and
// invalid UTF-8 in the strings the runtime and the control plane use,
// whoever calls them (the HTTP API refuses them earlier still).
func TestTextFieldsRefuseNULAndInvalidUTF8(t *testing.T) {
	now := time.Now()
	cluster := func(rt api.Runtime) error {
		req := api.ClusterRequest{Name: "c", CloudID: NewID(PrefixCloud, now), ComputeConfigID: NewID(PrefixComputeConfig, now), Runtime: rt}
		return CheckCluster(&req)
	}
	k8s := func(mutate func(*api.KubernetesCloud)) error {
		spec := api.CloudSpec{Name: "k", Provider: "kubernetes", StorageLocation: "s3://bucket-k",
			Kubernetes: validKubernetesCloud("secret")}
		mutate(spec.Kubernetes)
		return CheckCloud(&spec)
	}
	cases := []struct {
		name, field, reason string
		err                 error
	}{
		{"image NUL", "runtime.image", "NUL", cluster(api.Runtime{Image: "ray\x00"})},
		{"image bytes", "runtime.image", "UTF-8", cluster(api.Runtime{Image: "ray\xff"})},
		{"argument NUL", "runtime.head_command[1]", "NUL", cluster(api.Runtime{HeadCmd: []string{"sh", "a\x00b"}})},
		{"argument bytes", "runtime.worker_command[0]", "UTF-8", cluster(api.Runtime{WorkerCmd: []string{"\xed\xa0\x80"}})},
		{"env value NUL", `runtime.env["A"]`, "NUL", cluster(api.Runtime{Env: map[string]string{"A": "\x00"}})},
		{"env value bytes", `runtime.env["A"]`, "UTF-8", cluster(api.Runtime{Env: map[string]string{"A": "\xc3"}})},
		{"env name NUL", `runtime.env["A\x00"]`, "variable name", cluster(api.Runtime{Env: map[string]string{"A\x00": "x"}})},
		{"ray version bytes", "runtime.ray_version", "version", cluster(api.Runtime{RayVersion: "2.4\xff"})},
		{"api server NUL", "kubernetes.api_server", "NUL", k8s(func(k *api.KubernetesCloud) { k.APIServer = "https://k8s\x00.example" })},
		{"ca NUL", "kubernetes.ca_cert_pem", "NUL", k8s(func(k *api.KubernetesCloud) { k.CACertPEM = "-----BEGIN CERTIFICATE-----\x00" })},
		{"token bytes", "kubernetes.token", "UTF-8", k8s(func(k *api.KubernetesCloud) { k.Token = "tok\xfe" })},
		{"token NUL", "kubernetes.token", "NUL", k8s(func(k *api.KubernetesCloud) { k.Token = "tok\x00" })},
	}
	for _, c := range cases {
		if got := reasonOf(t, c.err, c.field); !strings.Contains(got, c.reason) || got == "" {
			t.Errorf("%s: reason for %s is %q, want one with %q (error %v)", c.name, c.field, got, c.reason, c.err)
		}
	}
	// Valid UTF-8 passes, U+FFFD and all.
	if err := cluster(api.Runtime{Image: "caf\u00e9 \uFFFD", HeadCmd: []string{"echo", "\U0001F600"}, Env: map[string]string{"A": "\uFFFD"}}); err != nil {
		t.Fatalf("valid UTF-8 refused: %v", err)
	}
}

// TestDurationMaxima: each duration of a compute config is accepted up to
// its maximum and refused past it, and each maximum converts to a
// time.Duration without overflow.
func TestDurationMaxima(t *testing.T) {
	fields := []struct {
		field string
		max   int
		set   func(*api.ComputeConfigRequest, int)
	}{
		{"worker_idle_timeout_seconds", api.MaxWorkerIdleTimeoutSec, func(c *api.ComputeConfigRequest, v int) { c.WorkerIdleTimeoutSeconds = v }},
		{"idle_termination_seconds", api.MaxIdleTerminationSec, func(c *api.ComputeConfigRequest, v int) { c.IdleTerminationSeconds = v }},
		{"maximum_uptime_seconds", api.MaxUptimeSec, func(c *api.ComputeConfigRequest, v int) { c.MaximumUptimeSeconds = v }},
	}
	for _, f := range fields {
		for _, c := range []struct {
			v     int
			valid bool
		}{{f.max, true}, {f.max + 1, false}, {1 << 62, false}, {-1, false}} {
			req := api.ComputeConfigRequest{Name: "cc", ComputeConfigSpec: api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: "local.small"}}}
			f.set(&req, c.v)
			got := fieldsOf(t, CheckComputeConfig(&req))
			if want := map[bool]string{true: "", false: f.field}[c.valid]; got != want {
				t.Errorf("%s = %d: fields %q, want %q", f.field, c.v, got, want)
			}
		}
		if d := time.Duration(f.max) * time.Second; d <= 0 || d/time.Second != time.Duration(f.max) {
			t.Errorf("%s maximum %d overflows a time.Duration", f.field, f.max)
		}
	}
	if d := time.Duration(api.MaxHeartbeatSec*(api.MaxLostAfter+1)) * time.Second; d/time.Second != api.MaxHeartbeatSec*(api.MaxLostAfter+1) {
		t.Error("the longest lost-after window overflows a time.Duration")
	}
}

// TestTokenExpiryMaximum: CheckToken keeps expires_at between now and
// api.MaxTimestamp, which int64 Unix nanoseconds (the store) hold exactly,
// and answers it in UTC.
func TestTokenExpiryMaximum(t *testing.T) {
	now := time.Now()
	if back := time.Unix(0, api.MaxTimestamp.UnixNano()).UTC(); !back.Equal(api.MaxTimestamp) {
		t.Fatalf("MaxTimestamp reads back from Unix nanoseconds as %v", back)
	}
	zone := time.FixedZone("plus2", 2*3600)
	for _, c := range []struct {
		at     time.Time
		fields string
	}{
		{api.MaxTimestamp, ""},
		{api.MaxTimestamp.In(zone), ""},
		{api.MaxTimestamp.Add(time.Nanosecond), "expires_at"},
		{time.Date(2263, 1, 1, 0, 0, 0, 0, time.UTC), "expires_at"},
		{now, "expires_at"},
	} {
		req := api.CreateTokenRequest{Name: "t", Role: api.RoleReader, ExpiresAt: &c.at}
		if got := fieldsOf(t, CheckToken(&req, now)); got != c.fields {
			t.Errorf("expires_at %v: fields %q, want %q", c.at, got, c.fields)
		}
		if c.fields == "" && req.ExpiresAt.Location() != time.UTC {
			t.Errorf("expires_at %v answered in %v, want UTC", c.at, req.ExpiresAt.Location())
		}
	}
}
