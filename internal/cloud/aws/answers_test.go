package aws

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
)

// hostileDriver answers a Driver whose EC2 and IAM clients call a server
// that answers every request with answer(action), without assuming a role.
func hostileDriver(t *testing.T, answer func(action string, form map[string][]string) string) *Driver {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprint(w, answer(r.Form.Get("Action"), r.Form))
	}))
	t.Cleanup(srv.Close)
	base := awssdk.Config{
		Region:       "us-east-1",
		BaseEndpoint: awssdk.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		Retryer:      func() awssdk.Retryer { return awssdk.NopRetryer{} },
	}
	d, err := New(Config{
		Base: base, OrgID: "org_1", CloudID: "cld_1", Region: "us-east-1",
		Cloud: api.AWSCloud{RoleARN: "arn:aws:iam::123456789012:role/r", ExternalID: "x-1",
			SubnetIDs: []string{"subnet-0123456789abcdef0"}, ImageID: "ami-0123456789abcdef0",
			InstanceProfileARN: "arn:aws:iam::123456789012:instance-profile/p"},
	})
	if err != nil {
		t.Fatal(err)
	}
	d.ec2 = ec2.NewFromConfig(base)
	d.iam = iam.NewFromConfig(base)
	return d
}

const ec2NS = `xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"`

func xmlInstance(id, state, ip string, tags map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<item><instanceId>%s</instanceId><instanceType>m5.large</instanceType>", id)
	if state != "" {
		fmt.Fprintf(&b, "<instanceState><code>16</code><name>%s</name></instanceState>", state)
	}
	if ip != "" {
		fmt.Fprintf(&b, "<privateIpAddress>%s</privateIpAddress>", ip)
	}
	b.WriteString("<tagSet>")
	for k, v := range tags {
		fmt.Fprintf(&b, "<item><key>%s</key><value>%s</value></item>", k, v)
	}
	b.WriteString("</tagSet></item>")
	return b.String()
}

func describeInstancesAnswer(next string, instances ...string) string {
	token := ""
	if next != "" {
		token = "<nextToken>" + next + "</nextToken>"
	}
	return `<DescribeInstancesResponse ` + ec2NS + `><requestId>r</requestId><reservationSet><item><reservationId>r-1</reservationId><instancesSet>` +
		strings.Join(instances, "") + `</instancesSet></item></reservationSet>` + token + `</DescribeInstancesResponse>`
}

// TestListDropsWhatItMustNotActOn: a backend that ignores the filters, or
// answers nonsense, gets no instance past List that the reconciler would
// record or terminate wrongly.
func TestListDropsWhatItMustNotActOn(t *testing.T) {
	managed := map[string]string{cloud.TagManagedBy: cloud.ManagedByValue, cloud.TagCluster: "cls_1", cloud.TagNode: "nod_1"}
	good := xmlInstance("i-0123456789abcdef0", "running", "10.0.0.7", managed)
	d := hostileDriver(t, func(action string, _ map[string][]string) string {
		return describeInstancesAnswer("",
			good,
			good,                                    // twice: once in the answer
			xmlInstance("", "running", "", managed), // no id
			xmlInstance("i-../../etc", "running", "", managed),                                              // not an instance id
			xmlInstance("i-0aaaaaaaaaaaaaaa1", "running", "", map[string]string{cloud.TagCluster: "cls_1"}), // not rayplane's
			xmlInstance("i-0aaaaaaaaaaaaaaa2", "running", "", map[string]string{cloud.TagManagedBy: cloud.ManagedByValue, cloud.TagCluster: "cls_2"}),
			xmlInstance("i-0aaaaaaaaaaaaaaa3", "terminated", "", managed),
			xmlInstance("i-0aaaaaaaaaaaaaaa4", "", "", managed), // no state
			xmlInstance("i-0aaaaaaaaaaaaaaa5", "pending", "not-an-ip", managed),
		)
	})
	got, err := d.List(context.Background(), map[string]string{cloud.TagCluster: "cls_1"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, i := range got {
		ids = append(ids, i.ID+"@"+i.Address)
	}
	if want := "i-0123456789abcdef0@10.0.0.7 i-0aaaaaaaaaaaaaaa5@"; strings.Join(ids, " ") != want {
		t.Fatalf("List = %q, want %q", strings.Join(ids, " "), want)
	}
}

// TestListEndsOnEndlessPages: a backend whose NextToken never ends is a
// transient error, not a list that grows until memory or the deadline runs
// out.
func TestListEndsOnEndlessPages(t *testing.T) {
	var calls atomic.Int64
	d := hostileDriver(t, func(string, map[string][]string) string {
		n := calls.Add(1)
		return describeInstancesAnswer(fmt.Sprintf("t%d", n), xmlInstance(fmt.Sprintf("i-%017x", n), "running", "", map[string]string{
			cloud.TagManagedBy: cloud.ManagedByValue}))
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := d.List(ctx, nil)
	if err == nil || cloud.KindOf(err) != cloud.Transient || ctx.Err() != nil {
		t.Fatalf("List = %v (ctx %v), want a transient error before the deadline", err, ctx.Err())
	}
	if n := calls.Load(); n != maxListPages {
		t.Fatalf("%d pages asked for, want %d", n, maxListPages)
	}
}

// TestInstanceTypesRefusesUnbelievableAnswers: negative, zero or huge
// CPUs, memory and GPUs leave the type out of the catalog instead of
// reaching the planner (or overflowing MiB<<20).
func TestInstanceTypesRefusesUnbelievableAnswers(t *testing.T) {
	item := func(name string, vcpus int64, mib int64, gpus string) string {
		s := fmt.Sprintf("<item><instanceType>%s</instanceType><vCpuInfo><defaultVCpus>%d</defaultVCpus></vCpuInfo>"+
			"<memoryInfo><sizeInMiB>%d</sizeInMiB></memoryInfo>", name, vcpus, mib)
		if gpus != "" {
			s += "<gpuInfo><gpus><item><count>" + gpus + "</count></item></gpus></gpuInfo>"
		}
		return s + "</item>"
	}
	d := hostileDriver(t, func(string, map[string][]string) string {
		return `<DescribeInstanceTypesResponse ` + ec2NS + `><requestId>r</requestId><instanceTypeSet>` +
			item("m5.large", 2, 8192, "") +
			item("m5.large", 64, 8192, "") + // twice: the first is kept
			item("m5.xlarge", -4, 16384, "") +
			item("m5.2xlarge", 8, 1<<50, "") + // MiB<<20 would overflow
			item("c5.large", 0, 4096, "") +
			item("g4dn.xlarge", 4, 16384, "-1") +
			item("g5.xlarge", 4, 16384, "1") +
			item("r5.large", 2, -1, "") +
			`<item><instanceType>r5.xlarge</instanceType></item>` + // no CPUs, no memory
			`</instanceTypeSet></DescribeInstanceTypesResponse>`
	})
	got, err := d.InstanceTypes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, it := range got {
		names = append(names, fmt.Sprintf("%s:%g/%d/%g", it.Name, it.CPUs, it.MemoryBytes>>20, it.GPUs))
	}
	if want := "g5.xlarge:4/16384/1 m5.large:2/8192/0"; strings.Join(names, " ") != want {
		t.Fatalf("InstanceTypes = %q, want %q", strings.Join(names, " "), want)
	}
}

// TestLaunchRefusesAnswerWithoutInstanceID: a RunInstances answer without
// a valid instance id is a transient failure, never an instance recorded
// with an empty id.
func TestLaunchRefusesAnswerWithoutInstanceID(t *testing.T) {
	d := hostileDriver(t, func(action string, _ map[string][]string) string {
		switch action {
		case "DescribeInstances":
			return describeInstancesAnswer("")
		case "RunInstances":
			return `<RunInstancesResponse ` + ec2NS + `><requestId>r</requestId><reservationId>r-1</reservationId><instancesSet>` +
				`<item><instanceType>m5.large</instanceType></item></instancesSet></RunInstancesResponse>`
		}
		return ""
	})
	inst, err := d.Launch(context.Background(), cloud.LaunchRequest{NodeID: "nod_1", InstanceType: "m5.large",
		Bootstrap: []byte(`{}`), IdempotencyKey: "nod_1"})
	if err == nil || cloud.KindOf(err) != cloud.Transient {
		t.Fatalf("Launch = %+v, %v; want a transient error", inst, err)
	}
}

// TestVerifyInstanceProfileWithoutAnswer: GetInstanceProfile answering no
// profile is a failed check, not a panic.
func TestVerifyInstanceProfileWithoutAnswer(t *testing.T) {
	d := hostileDriver(t, func(action string, _ map[string][]string) string {
		return `<GetInstanceProfileResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><GetInstanceProfileResult>` +
			`</GetInstanceProfileResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetInstanceProfileResponse>`
	})
	var v verification
	if role := d.verifyInstanceProfile(context.Background(), d.iam, &v); role != "" || len(v.Failures) != 1 ||
		v.Failures[0].Check != CheckInstanceProfile {
		t.Fatalf("role %q, failures %+v; want one instance profile failure", role, v.Failures)
	}
}

// TestVerifyStorageInAnotherRegion: S3's redirect for a bucket of another
// region is a failed check naming the region, not a verification that
// never concludes.
func TestVerifyStorageInAnotherRegion(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-amz-bucket-region", "eu-west-1")
		w.WriteHeader(http.StatusMovedPermanently)
	}))
	t.Cleanup(srv.Close)
	base := awssdk.Config{
		Region:       "us-east-1",
		BaseEndpoint: awssdk.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		Retryer:      func() awssdk.Retryer { return awssdk.NopRetryer{} },
	}
	d := hostileDriver(t, func(string, map[string][]string) string { return "" })
	d.cfg.StorageLocation = "s3://logs/rayplane"
	_, _, s3c := clients(base)
	var v verification
	d.verifyStorage(context.Background(), s3c, &v)
	if len(v.Failures) != 1 || v.Failures[0].Kind != cloud.Invalid || !strings.Contains(v.Failures[0].Problem, "region") {
		t.Fatalf("failures %+v; want one invalid failure naming the region", v.Failures)
	}
}
