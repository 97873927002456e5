package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

const awsCloudBody = `{"name":%q,"provider":"aws","region":"us-east-1","storage_location":"s3://rayplane-logs/x",
	"aws":{"role_arn":"arn:aws:iam::123456789012:role/rayplane","subnet_ids":["subnet-0123456789abcdef0","subnet-89abcdef"],
	"security_group_ids":["sg-0123456789abcdef0"],"instance_profile_arn":"arn:aws:iam::123456789012:instance-profile/rayplane-node",
	"image_id":"ami-0123456789abcdef0"}}`

// TestAWSCloudSettings: an aws cloud keeps its network, image and instance
// profile as sent; a bad entry of a list is named by its index; a change of
// any of them sends the cloud back to verifying.
func TestAWSCloudSettings(t *testing.T) {
	e := newTestEnv(t)
	var c api.Cloud
	e.must(201, "POST", "/v1/clouds", e.admin, fmt.Sprintf(awsCloudBody, "prod")).decode(t, &c)
	if c.AWS == nil || len(c.AWS.SubnetIDs) != 2 || c.AWS.SubnetIDs[1] != "subnet-89abcdef" || c.AWS.ImageID != "ami-0123456789abcdef0" ||
		c.AWS.SecurityGroupIDs[0] != "sg-0123456789abcdef0" || !strings.HasSuffix(c.AWS.InstanceProfileARN, "/rayplane-node") ||
		!strings.HasPrefix(c.AWS.ExternalID, "rayplane-") {
		t.Fatalf("cloud answered as %+v", c.AWS)
	}
	var read api.Cloud
	e.must(200, "GET", "/v1/clouds/"+c.ID, e.admin, "").decode(t, &read)
	if fmt.Sprint(read.AWS) != fmt.Sprint(c.AWS) {
		t.Fatalf("read back %+v, created %+v", read.AWS, c.AWS)
	}

	bad := strings.Replace(fmt.Sprintf(awsCloudBody, "bad-ids"), `"subnet-89abcdef"`, `"subnet-XYZ"`, 1)
	bad = strings.Replace(bad, `"ami-0123456789abcdef0"`, `"ami-1"`, 1)
	fe := e.must(400, "POST", "/v1/clouds", e.admin, bad).apiError(t).Fields
	if got := fmt.Sprint(fe); !strings.Contains(got, "aws.subnet_ids[1]") || !strings.Contains(got, "aws.image_id") || len(fe) != 2 {
		t.Fatalf("fields %v, want aws.subnet_ids[1] and aws.image_id", fe)
	}
	noSubnets := strings.Replace(fmt.Sprintf(awsCloudBody, "none"), `["subnet-0123456789abcdef0","subnet-89abcdef"]`, `[]`, 1)
	if fe := e.must(400, "POST", "/v1/clouds", e.admin, noSubnets).apiError(t).Fields; len(fe) != 1 || fe[0].Field != "aws.subnet_ids" {
		t.Fatalf("fields %v, want aws.subnet_ids", fe)
	}

	// Verified, then the subnets' order changes: verifying again.
	e.must(200, "POST", "/v1/clouds/"+c.ID+"/verify", e.admin, "").decode(t, &c)
	if c.Status != api.CloudActive {
		t.Fatalf("status %s (%s) after verify", c.Status, c.StatusReason)
	}
	swapped := strings.Replace(fmt.Sprintf(awsCloudBody, "prod"), `"subnet-0123456789abcdef0","subnet-89abcdef"`, `"subnet-89abcdef","subnet-0123456789abcdef0"`, 1)
	e.must(200, "PUT", "/v1/clouds/"+c.ID, e.admin, swapped).decode(t, &c)
	if c.Status != api.CloudVerifying {
		t.Fatalf("status %s after the subnets changed, want verifying", c.Status)
	}
}

// TestVerifyCloud: POST /v1/clouds/{id}/verify records and answers what
// the driver found, naming every failed check; a verification that does
// not conclude is a 503 that keeps the known status; each call is audited.
func TestVerifyCloud(t *testing.T) {
	e := newTestEnv(t)
	var good, bad, flaky api.Cloud
	e.must(201, "POST", "/v1/clouds", e.admin, fmt.Sprintf(awsCloudBody, "good")).decode(t, &good)
	e.must(201, "POST", "/v1/clouds", e.admin, fmt.Sprintf(awsCloudBody, "bad")).decode(t, &bad)
	e.must(201, "POST", "/v1/clouds", e.admin, fmt.Sprintf(awsCloudBody, "flaky")).decode(t, &flaky)

	e.must(200, "POST", "/v1/clouds/"+good.ID+"/verify", e.admin, "").decode(t, &good)
	if good.Status != api.CloudActive || good.LastVerifiedAt == nil {
		t.Errorf("good cloud: %s (%s), verified at %v", good.Status, good.StatusReason, good.LastVerifiedAt)
	}
	e.must(200, "POST", "/v1/clouds/"+bad.ID+"/verify", e.admin, "").decode(t, &bad)
	if bad.Status != api.CloudError || !strings.Contains(bad.StatusReason, "subnet subnet-0123456789abcdef0 does not exist") ||
		!strings.Contains(bad.StatusReason, "ec2:RunInstances") {
		t.Errorf("bad cloud: %s (%s)", bad.Status, bad.StatusReason)
	}
	var read api.Cloud
	e.must(200, "GET", "/v1/clouds/"+bad.ID, e.admin, "").decode(t, &read)
	if read.Status != bad.Status || read.StatusReason != bad.StatusReason {
		t.Errorf("not recorded: read %s (%s)", read.Status, read.StatusReason)
	}

	r := e.must(503, "POST", "/v1/clouds/"+flaky.ID+"/verify", e.admin, "")
	if msg := r.apiError(t).Message; !strings.Contains(msg, "RequestLimitExceeded") || !strings.Contains(msg, "try again") {
		t.Errorf("flaky cloud answered %q", msg)
	}
	e.must(200, "GET", "/v1/clouds/"+flaky.ID, e.admin, "").decode(t, &read)
	if read.Status != api.CloudVerifying || !strings.Contains(read.StatusReason, "RequestLimitExceeded") {
		t.Errorf("a new cloud's transient failure: %s (%s)", read.Status, read.StatusReason)
	}

	e.must(404, "POST", "/v1/clouds/cld_00000000000000000000000000/verify", e.admin, "")
	reader := e.newToken(e.admin, api.RoleReader)
	e.must(403, "POST", "/v1/clouds/"+good.ID+"/verify", reader, "")

	var page api.Page[api.AuditEvent]
	e.must(200, "GET", "/v1/audit-events?limit=500", e.admin, "").decode(t, &page)
	results := map[string]string{}
	for _, ev := range page.Items {
		if ev.Action == "clouds.verify" {
			results[ev.TargetID] = ev.Result
		}
	}
	if results[good.ID] != api.AuditSuccess || results[bad.ID] != api.AuditSuccess || results[flaky.ID] != string(api.CodeUnavailable) {
		t.Errorf("audit results %v", results)
	}
}

// TestVerifyCloudUnwired: a control plane without VerifyNow says so.
func TestVerifyCloudUnwired(t *testing.T) {
	e := newTestEnv(t)
	e.api.cp.VerifyNow = nil
	var c api.Cloud
	e.must(201, "POST", "/v1/clouds", e.admin, fmt.Sprintf(awsCloudBody, "x")).decode(t, &c)
	e.must(503, "POST", "/v1/clouds/"+c.ID+"/verify", e.admin, "")
}

func TestAWSPolicies(t *testing.T) {
	e := newTestEnv(t)
	reader := e.newToken(e.admin, api.RoleReader)
	var out api.AWSPolicies
	e.must(200, "POST", "/v1/aws/policies", reader, `{"external_id":"rayplane-abc","node_role_arn":"arn:aws:iam::123456789012:role/node",
		"storage_location":"s3://rayplane-logs/x","region":"eu-west-1"}`).decode(t, &out)
	if out.ControlPlanePrincipal != "arn:aws:iam::111122223333:role/rayplane-cp" {
		t.Errorf("principal %q: a role session must be trusted as its role", out.ControlPlanePrincipal)
	}
	var trust struct {
		Version   string
		Statement []struct {
			Principal map[string]string
			Action    string
			Condition map[string]map[string]string
		}
	}
	if err := json.Unmarshal([]byte(out.TrustPolicy), &trust); err != nil || len(trust.Statement) != 1 {
		t.Fatalf("trust policy %s: %v", out.TrustPolicy, err)
	}
	if s := trust.Statement[0]; s.Principal["AWS"] != out.ControlPlanePrincipal || s.Action != "sts:AssumeRole" ||
		s.Condition["StringEquals"]["sts:ExternalId"] != "rayplane-abc" {
		t.Errorf("trust statement %+v", s)
	}
	for name, doc := range map[string]string{"permissions": out.PermissionsPolicy, "node": out.NodePolicy} {
		if !json.Valid([]byte(doc)) || !strings.Contains(doc, `"Version": "2012-10-17"`) {
			t.Errorf("%s policy: %s", name, doc)
		}
	}
	if !strings.Contains(out.PermissionsPolicy, "eu-west-1") || !strings.Contains(out.PermissionsPolicy, "arn:aws:iam::123456789012:role/node") ||
		!strings.Contains(out.NodePolicy, "arn:aws:s3:::rayplane-logs/x/*") {
		t.Errorf("policies not scoped: %s\n%s", out.PermissionsPolicy, out.NodePolicy)
	}
	var again api.AWSPolicies
	e.must(200, "POST", "/v1/aws/policies", reader, `{"external_id":"rayplane-abc","node_role_arn":"arn:aws:iam::123456789012:role/node",
		"storage_location":"s3://rayplane-logs/x","region":"eu-west-1"}`).decode(t, &again)
	if again != out {
		t.Error("the same request rendered different policies")
	}

	// With the cloud's own role, the role may simulate only its own
	// policies; without it, any role of the account's.
	if !strings.Contains(out.PermissionsPolicy, `"arn:aws:iam::123456789012:role/*"`) {
		t.Errorf("without role_arn SimulatePrincipalPolicy is not on the account's roles: %s", out.PermissionsPolicy)
	}
	var own api.AWSPolicies
	e.must(200, "POST", "/v1/aws/policies", reader, `{"external_id":"rayplane-abc","role_arn":"arn:aws:iam::123456789012:role/rayplane",
		"node_role_arn":"arn:aws:iam::123456789012:role/node","region":"eu-west-1"}`).decode(t, &own)
	if strings.Contains(own.PermissionsPolicy, `role/*"`) || !strings.Contains(own.PermissionsPolicy, `"Resource": "arn:aws:iam::123456789012:role/rayplane"`) {
		t.Errorf("with role_arn SimulatePrincipalPolicy is not scoped to it: %s", own.PermissionsPolicy)
	}
	fe := e.must(400, "POST", "/v1/aws/policies", reader, `{"external_id":"rayplane-abc","role_arn":"arn:aws:iam::123456789012:user/x"}`).apiError(t).Fields
	if got := fmt.Sprint(fe); len(fe) != 1 || !strings.Contains(got, "role_arn") {
		t.Errorf("a bad role_arn: fields %v", fe)
	}

	var bare api.AWSPolicies
	e.must(200, "POST", "/v1/aws/policies", reader, `{"external_id":"rayplane-abc"}`).decode(t, &bare)
	if bare.NodePolicy != "" || strings.Contains(bare.PermissionsPolicy, "s3:") {
		t.Errorf("no storage location, yet: node %q, permissions %s", bare.NodePolicy, bare.PermissionsPolicy)
	}

	fe = e.must(400, "POST", "/v1/aws/policies", reader, `{"external_id":"x","node_role_arn":"arn:aws:iam::1:role/n","storage_location":"gs://b-1","region":"EU"}`).apiError(t).Fields
	if got := fmt.Sprint(fe); len(fe) != 4 || !strings.Contains(got, "external_id") || !strings.Contains(got, "node_role_arn") ||
		!strings.Contains(got, "storage_location") || !strings.Contains(got, "region") {
		t.Errorf("fields %v", fe)
	}
	e.must(400, "POST", "/v1/aws/policies", reader, `{"external_id":"rayplane-abc","extra":1}`)

	// Nothing of it is audited: it renders.
	var page api.Page[api.AuditEvent]
	e.must(200, "GET", "/v1/audit-events?limit=500", e.admin, "").decode(t, &page)
	for _, ev := range page.Items {
		if ev.Action == "aws.policies" {
			t.Errorf("rendering was audited: %+v", ev)
		}
	}
}

// TestAWSPoliciesWithoutIdentity: a control plane with no AWS identity, or
// one that cannot tell it, answers 503 saying how to give it one.
func TestAWSPoliciesWithoutIdentity(t *testing.T) {
	e := newTestEnv(t)
	for name, principal := range map[string]service.AWSPrincipalFunc{
		"none":   nil,
		"failed": func(context.Context) (string, error) { return "", errors.New("no EC2 IMDS role found") },
		"empty":  func(context.Context) (string, error) { return "", nil },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := e.api.cfg
			cfg.AWSPrincipal, cfg.Registry = principal, nil
			srv := httptest.NewServer(New(cfg))
			defer srv.Close()
			other := *e
			other.srv, other.t = srv, t
			msg := other.must(503, "POST", "/v1/aws/policies", e.admin, `{"external_id":"rayplane-abc"}`).apiError(t).Message
			if !strings.Contains(msg, "--aws-principal-arn") || !strings.Contains(msg, "default chain") {
				t.Errorf("answer %q does not say how to give the control plane an identity", msg)
			}
			if name == "failed" && !strings.Contains(msg, "no EC2 IMDS role found") {
				t.Errorf("answer %q does not say what failed", msg)
			}
		})
	}
}
