package awstest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// One moto serves every test of this file: its start costs seconds.
// Each test names its own roles and tags its own instances.
func TestFront(t *testing.T) {
	m := Start(t)
	t.Run("AssumeRoleExternalID", func(t *testing.T) { testAssumeRoleExternalID(t, m) })
	t.Run("SimulatePrincipalPolicy", func(t *testing.T) { testSimulatePrincipalPolicy(t, m) })
	t.Run("FailCapacity", func(t *testing.T) { testFailCapacity(t, m) })
	t.Run("EC2Validation", func(t *testing.T) { testEC2Validation(t, m) })
	t.Run("HoldRunInstances", func(t *testing.T) { testHoldRunInstances(t, m) })
	t.Run("S3Calls", func(t *testing.T) { testS3Calls(t, m) })
	t.Run("DriverShapedEC2", func(t *testing.T) { testDriverShapedEC2(t, m) })
	t.Run("RunInstancesChecks", func(t *testing.T) { testRunInstancesChecks(t, m) })
	t.Run("ClientToken", func(t *testing.T) { testClientToken(t, m) })
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func callerARN(t *testing.T, cfg awssdk.Config) string {
	t.Helper()
	out, err := sts.NewFromConfig(cfg).GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("get caller identity: %v", err)
	}
	return awssdk.ToString(out.Arn)
}

func testAssumeRoleExternalID(t *testing.T, m *Moto) {
	ctx := context.Background()
	cfg := m.Config(t)
	me := callerARN(t, cfg)
	client := sts.NewFromConfig(cfg)
	strict := m.CreateRole(t, "strict", me, "ext-0123456789", "")
	lax := m.CreateRole(t, "lax", me, "", "")
	other := m.CreateRole(t, "other-principal", "arn:aws:iam::123456789012:role/somebody-else", "ext-0123456789", "")
	account := m.CreateRole(t, "account-root", "arn:aws:iam::123456789012:root", "ext-0123456789", "")

	assume := func(role, externalID string) (*sts.AssumeRoleOutput, error) {
		in := &sts.AssumeRoleInput{RoleArn: &role, RoleSessionName: awssdk.String("rayplane-org-cloud"), DurationSeconds: awssdk.Int32(3600)}
		if externalID != "" {
			in.ExternalId = &externalID
		}
		return client.AssumeRole(ctx, in)
	}
	for _, tc := range []struct {
		name, role, externalID, code string
	}{
		{"right external id", strict, "ext-0123456789", ""},
		{"wrong external id", strict, "ext-9876543210", "AccessDenied"},
		{"missing external id", strict, "", "AccessDenied"},
		{"role without condition, no id", lax, "", ""},
		{"another principal", other, "ext-0123456789", "AccessDenied"},
		{"account root principal", account, "ext-0123456789", ""},
		{"no such role", "arn:aws:iam::123456789012:role/nobody", "ext-0123456789", "AccessDenied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := assume(tc.role, tc.externalID)
			if got := errorCode(err); got != tc.code {
				t.Fatalf("AssumeRole: error code %q (%v), want %q", got, err, tc.code)
			}
			if tc.code == "" && awssdk.ToString(out.Credentials.AccessKeyId) == "" {
				t.Fatal("AssumeRole answered no credentials")
			}
		})
	}

	// A duration under STS's minimum is refused.
	_, err := client.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: &strict, RoleSessionName: awssdk.String("rayplane-short"),
		ExternalId: awssdk.String("ext-0123456789"), DurationSeconds: awssdk.Int32(60)})
	if got := errorCode(err); got != "ValidationError" {
		t.Errorf("AssumeRole for 60 s: error code %q (%v), want ValidationError", got, err)
	}

	// Calls made with the assumed role's key name the role; the control
	// plane's own calls name none.
	out, err := assume(strict, "ext-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	c := out.Credentials
	roleCfg := rawConfig(m.URL, *c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken)
	if arn := callerARN(t, roleCfg); !strings.Contains(arn, ":assumed-role/strict/rayplane-org-cloud") {
		t.Errorf("assumed role's identity %s", arn)
	}
	var sawRole, sawRefusal bool
	for _, call := range m.Calls() {
		if call.Service == "sts" && call.Action == "GetCallerIdentity" && call.AccessKey == *c.AccessKeyId {
			sawRole = call.Role == strict
		}
		if call.Action == "AssumeRole" && call.Status == http.StatusForbidden && call.Code == "AccessDenied" && call.AccessKey == AccessKey && call.Role == "" {
			sawRefusal = true
		}
	}
	if !sawRole || !sawRefusal {
		t.Errorf("Calls: role's call named the role %v, a refusal recorded %v: %+v", sawRole, sawRefusal, m.Calls())
	}
}

func testSimulatePrincipalPolicy(t *testing.T, m *Moto) {
	role := m.CreateRole(t, "simulated", "arn:aws:iam::123456789012:root", "ext-0123456789", `{
		"Version": "2012-10-17",
		"Statement": [
			{"Effect": "Allow", "Action": ["ec2:Describe*", "ec2:RunInstances"], "Resource": "*"},
			{"Effect": "Allow", "Action": "ec2:TerminateInstances", "Resource": "*",
			 "Condition": {"StringEquals": {"aws:ResourceTag/rayplane-managed-by": "rayplane"}}}
		]}`)
	m.AttachManagedPolicy(t, "simulated", "simulated-managed", `{
		"Version": "2012-10-17",
		"Statement": [
			{"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
			{"Effect": "Deny", "Action": "iam:CreateUser", "Resource": "*"}
		]}`)
	actions := []string{"ec2:DescribeInstances", "ec2:RunInstances", "ec2:TerminateInstances",
		"iam:PassRole", "iam:CreateUser", "s3:ListBucket", "ec2:CreateTags"}
	want := map[string]iamDecision{
		"ec2:DescribeInstances":  "allowed",
		"ec2:RunInstances":       "allowed",
		"ec2:TerminateInstances": "allowed", // Condition is not evaluated
		"iam:PassRole":           "allowed",
		"iam:CreateUser":         "explicitDeny",
		"s3:ListBucket":          "implicitDeny",
		"ec2:CreateTags":         "implicitDeny",
	}
	out, err := iam.NewFromConfig(m.Config(t)).SimulatePrincipalPolicy(context.Background(), &iam.SimulatePrincipalPolicyInput{
		PolicySourceArn: &role,
		ActionNames:     actions,
	})
	if err != nil {
		t.Fatalf("SimulatePrincipalPolicy: %v", err)
	}
	got := map[string]iamDecision{}
	for _, r := range out.EvaluationResults {
		got[awssdk.ToString(r.EvalActionName)] = iamDecision(r.EvalDecision)
	}
	for action, w := range want {
		if got[action] != w {
			t.Errorf("%s: %q, want %q", action, got[action], w)
		}
	}
	if len(out.EvaluationResults) != len(actions) {
		t.Errorf("%d results for %d actions", len(out.EvaluationResults), len(actions))
	}

	_, err = iam.NewFromConfig(m.Config(t)).SimulatePrincipalPolicy(context.Background(), &iam.SimulatePrincipalPolicyInput{
		PolicySourceArn: awssdk.String("arn:aws:iam::123456789012:role/nobody"),
		ActionNames:     actions,
	})
	if got := errorCode(err); got != "NoSuchEntity" {
		t.Errorf("SimulatePrincipalPolicy of a missing role: %q (%v), want NoSuchEntity", got, err)
	}
}

type iamDecision string

func runInput(subnet, ami, tagValue string, spot bool) *ec2.RunInstancesInput {
	in := &ec2.RunInstancesInput{
		ImageId:      &ami,
		InstanceType: ec2types.InstanceTypeM5Large,
		MinCount:     awssdk.Int32(1),
		MaxCount:     awssdk.Int32(1),
		SubnetId:     &subnet,
		TagSpecifications: []ec2types.TagSpecification{{
			ResourceType: ec2types.ResourceTypeInstance,
			Tags:         []ec2types.Tag{{Key: awssdk.String("awstest"), Value: &tagValue}},
		}},
	}
	if spot {
		in.InstanceMarketOptions = &ec2types.InstanceMarketOptionsRequest{MarketType: ec2types.MarketTypeSpot}
	}
	return in
}

func testFailCapacity(t *testing.T, m *Moto) {
	ctx := context.Background()
	subnets, _, ami := m.Network(t)
	client := ec2.NewFromConfig(m.Config(t))
	undo := m.FailCapacity(Fault{Subnet: subnets[0]})
	undoSpot := m.FailCapacity(Fault{Subnet: subnets[1], Spot: true})

	before := len(m.Calls())
	_, err := client.RunInstances(ctx, runInput(subnets[0], ami, "capacity", false))
	if got := errorCode(err); got != "InsufficientInstanceCapacity" {
		t.Fatalf("RunInstances in the failing subnet: %q (%v), want InsufficientInstanceCapacity", got, err)
	}
	attempts := 0
	for _, c := range m.Calls()[before:] {
		if c.Action == "RunInstances" && c.Status == http.StatusInternalServerError && c.Code == "InsufficientInstanceCapacity" {
			attempts++
		}
	}
	if attempts != 3 {
		t.Errorf("%d RunInstances attempts answered 500 InsufficientInstanceCapacity, want the SDK's 3", attempts)
	}
	if _, err := client.RunInstances(ctx, runInput(subnets[1], ami, "capacity", true)); errorCode(err) != "InsufficientInstanceCapacity" {
		t.Errorf("spot RunInstances in subnet 2: %v, want InsufficientInstanceCapacity", err)
	}
	if _, err := client.RunInstances(ctx, runInput(subnets[1], ami, "capacity", false)); err != nil {
		t.Errorf("on-demand RunInstances in subnet 2: %v", err)
	}
	if n := len(m.Instances(t, map[string]string{"awstest": "capacity"})); n != 1 {
		t.Errorf("%d instances in moto, want the one on-demand launch", n)
	}
	undo()
	undoSpot()
	if _, err := client.RunInstances(ctx, runInput(subnets[0], ami, "capacity", true)); err != nil {
		t.Errorf("RunInstances after undo: %v", err)
	}
	undo() // twice is harmless
}

// signedPost sends a query-protocol request with a SigV4-looking
// Authorization header (moto and the front read only its scope).
func signedPost(t *testing.T, m *Moto, service string, form url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, m.URL+"/", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+AccessKey+"/20260101/us-east-1/"+service+
		"/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func testEC2Validation(t *testing.T, m *Moto) {
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		want   string
	}{
		{"valid", url.Values{"Action": {"DescribeInstances"}, "Version": {"2016-11-15"},
			"Filter.1.Name": {"tag:x"}, "Filter.1.Value.1": {"y"}, "MaxResults": {"5"}}, 200, "<DescribeInstancesResponse"},
		{"unknown parameter", url.Values{"Action": {"DescribeInstances"}, "Version": {"2016-11-15"},
			"Filters.1.Name": {"tag:x"}}, 400, "<Code>UnknownParameter</Code><Message>The parameter Filters.1.Name is not recognized"},
		{"parameter of another action", url.Values{"Action": {"RunInstances"}, "Version": {"2016-11-15"}, "ImageId": {"ami-12345678"},
			"MinCount": {"1"}, "MaxCount": {"1"}, "InstanceIds.1": {"i-1"}}, 400, "<Code>UnknownParameter</Code>"},
		{"unknown action", url.Values{"Action": {"LaunchInstances"}, "Version": {"2016-11-15"}}, 400, "<Code>InvalidAction</Code>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := signedPost(t, m, "ec2", tc.form)
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Errorf("answered %d %s, want %d with %q", status, body, tc.status, tc.want)
			}
		})
	}
	// The SDK's own requests pass, and it reads the front's error shape.
	client := ec2.NewFromConfig(m.Config(t))
	if _, err := client.DescribeInstanceTypes(context.Background(), &ec2.DescribeInstanceTypesInput{
		InstanceTypes: []ec2types.InstanceType{ec2types.InstanceTypeM5Large},
	}); err != nil {
		t.Errorf("DescribeInstanceTypes: %v", err)
	}
}

func testHoldRunInstances(t *testing.T, m *Moto) {
	subnets, _, ami := m.Network(t)
	client := ec2.NewFromConfig(m.Config(t))
	release := m.HoldRunInstances()
	type result struct {
		out *ec2.RunInstancesOutput
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := client.RunInstances(context.Background(), runInput(subnets[2], ami, "held", false))
		done <- result{out, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.WaitHeld(ctx, 1); err != nil {
		t.Fatal(err)
	}
	in := m.Instances(t, map[string]string{"awstest": "held"})
	if len(in) != 1 {
		t.Fatalf("%d instances in moto while the answer is held, want 1", len(in))
	}
	select {
	case r := <-done:
		t.Fatalf("RunInstances answered while held: %+v", r)
	default:
	}
	release()
	r := <-done
	if r.err != nil {
		t.Fatalf("RunInstances after release: %v", r.err)
	}
	if got, want := awssdk.ToString(r.out.Instances[0].InstanceId), awssdk.ToString(in[0].InstanceId); got != want {
		t.Errorf("RunInstances answered %s, moto holds %s", got, want)
	}
	release() // twice is harmless
	// Not held any more.
	if _, err := client.RunInstances(context.Background(), runInput(subnets[2], ami, "held", false)); err != nil {
		t.Errorf("RunInstances after release: %v", err)
	}
}

func testS3Calls(t *testing.T, m *Moto) {
	m.CreateBucket(t, "rayplane-logs")
	client := s3.NewFromConfig(m.Config(t), func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := client.HeadBucket(context.Background(), &s3.HeadBucketInput{Bucket: awssdk.String("rayplane-logs")}); err != nil {
		t.Fatalf("HeadBucket: %v", err)
	}
	_, err := client.HeadBucket(context.Background(), &s3.HeadBucketInput{Bucket: awssdk.String("no-such-bucket")})
	if err == nil {
		t.Fatal("HeadBucket of a missing bucket succeeded")
	}
	var found bool
	for _, c := range m.Calls() {
		found = found || c.Service == "s3" && c.Action == "HEAD /rayplane-logs" && c.AccessKey == AccessKey && c.Status == 200
	}
	if !found {
		t.Errorf("no s3 HEAD /rayplane-logs call in %+v", m.Calls())
	}
}

// The EC2 requests the driver makes, with every field it sets, pass the
// front's validation: the harness must not refuse what AWS accepts.
func testDriverShapedEC2(t *testing.T, m *Moto) {
	ctx := context.Background()
	subnets, sg, ami := m.Network(t)
	m.CreateRole(t, "node", "arn:aws:iam::123456789012:root", "", "")
	profile := m.CreateInstanceProfile(t, "rayplane-node", "node")
	client := ec2.NewFromConfig(m.Config(t))
	before := len(m.Calls())
	in := runInput(subnets[0], ami, "driver-shaped", true)
	in.ClientToken = awssdk.String("rayplane-0123456789abcdef-0-spot")
	in.SecurityGroupIds = []string{sg}
	in.UserData = awssdk.String("IyEvYmluL3NoCg==")
	in.IamInstanceProfile = &ec2types.IamInstanceProfileSpecification{Arn: &profile}
	in.MetadataOptions = &ec2types.InstanceMetadataOptionsRequest{HttpTokens: ec2types.HttpTokensStateRequired}
	in.InstanceMarketOptions.SpotOptions = &ec2types.SpotMarketOptions{
		SpotInstanceType:             ec2types.SpotInstanceTypeOneTime,
		InstanceInterruptionBehavior: ec2types.InstanceInterruptionBehaviorTerminate,
	}
	in.TagSpecifications = append(in.TagSpecifications, ec2types.TagSpecification{
		ResourceType: ec2types.ResourceTypeVolume,
		Tags:         []ec2types.Tag{{Key: awssdk.String("awstest"), Value: awssdk.String("driver-shaped")}},
	})
	run, err := client.RunInstances(ctx, in)
	if err != nil {
		t.Fatalf("RunInstances: %v", err)
	}
	id := awssdk.ToString(run.Instances[0].InstanceId)
	pages := ec2.NewDescribeInstancesPaginator(client, &ec2.DescribeInstancesInput{
		Filters: []ec2types.Filter{
			{Name: awssdk.String("tag:awstest"), Values: []string{"driver-shaped"}},
			{Name: awssdk.String("instance-state-name"), Values: []string{"pending", "running"}},
		},
		MaxResults: awssdk.Int32(5),
	})
	found := 0
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatalf("DescribeInstances: %v", err)
		}
		for _, r := range page.Reservations {
			found += len(r.Instances)
		}
	}
	if found != 1 {
		t.Errorf("DescribeInstances by tag found %d instances, want 1", found)
	}
	if _, err := client.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{
		Filters: []ec2types.Filter{{Name: awssdk.String("instance-type"), Values: []string{"m5.large", "g5.xlarge"}}},
	}); err != nil {
		t.Errorf("DescribeInstanceTypes: %v", err)
	}
	if _, err := client.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: subnets}); err != nil {
		t.Errorf("DescribeSubnets: %v", err)
	}
	if _, err := client.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{sg}}); err != nil {
		t.Errorf("DescribeSecurityGroups: %v", err)
	}
	if _, err := client.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{ami}}); err != nil {
		t.Errorf("DescribeImages: %v", err)
	}
	if _, err := client.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Errorf("TerminateInstances: %v", err)
	}
	_, err = client.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{"i-0123456789abcdef0"}})
	if got := errorCode(err); got != "InvalidInstanceID.NotFound" {
		t.Errorf("TerminateInstances of a missing instance: %q (%v), want InvalidInstanceID.NotFound", got, err)
	}
	for _, c := range m.Calls()[before:] {
		if c.Service == "ec2" && c.Code != "" {
			t.Errorf("the front refused %s: %s", c.Action, c.Code)
		}
	}
}

// What moto accepts but EC2 refuses, the front refuses.
func testRunInstancesChecks(t *testing.T, m *Moto) {
	subnets, sg, ami := m.Network(t)
	m.CreateRole(t, "checked-node", "arn:aws:iam::123456789012:root", "", "")
	profile := m.CreateInstanceProfile(t, "checked-node", "checked-node")
	client := ec2.NewFromConfig(m.Config(t))
	for _, tc := range []struct {
		name   string
		mutate func(*ec2.RunInstancesInput)
		code   string
	}{
		{"valid", func(in *ec2.RunInstancesInput) {}, ""},
		{"unknown image", func(in *ec2.RunInstancesInput) { in.ImageId = awssdk.String("ami-0123456789abcdef0") }, "InvalidAMIID.NotFound"},
		{"malformed image", func(in *ec2.RunInstancesInput) { in.ImageId = awssdk.String("image-1") }, "InvalidAMIID.Malformed"},
		{"unknown instance type", func(in *ec2.RunInstancesInput) { in.InstanceType = "x9.nosuch" }, "InvalidParameterValue"},
		{"unknown instance profile", func(in *ec2.RunInstancesInput) {
			in.IamInstanceProfile = &ec2types.IamInstanceProfileSpecification{Arn: awssdk.String(strings.Replace(profile, "checked-node", "nosuch", 1))}
		}, "InvalidParameterValue"},
		{"unknown subnet (moto)", func(in *ec2.RunInstancesInput) { in.SubnetId = awssdk.String("subnet-0123456789abcdef0") }, "InvalidSubnetID.NotFound"},
		{"unknown security group (moto)", func(in *ec2.RunInstancesInput) { in.SecurityGroupIds = []string{"sg-0123456789abcdef0"} }, "InvalidGroup.NotFound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := runInput(subnets[0], ami, "checked", false)
			in.SecurityGroupIds = []string{sg}
			in.IamInstanceProfile = &ec2types.IamInstanceProfileSpecification{Arn: &profile}
			tc.mutate(in)
			_, err := client.RunInstances(context.Background(), in)
			if got := errorCode(err); got != tc.code {
				t.Errorf("RunInstances: %q (%v), want %q", got, err, tc.code)
			}
		})
	}
	if n := len(m.Instances(t, map[string]string{"awstest": "checked"})); n != 1 {
		t.Errorf("%d instances in moto, want only the valid one", n)
	}
}

func testClientToken(t *testing.T, m *Moto) {
	ctx := context.Background()
	subnets, _, ami := m.Network(t)
	client := ec2.NewFromConfig(m.Config(t))
	launch := func(subnet, token string) (string, error) {
		in := runInput(subnet, ami, "token", false)
		in.ClientToken = &token
		out, err := client.RunInstances(ctx, in)
		if err != nil {
			return "", err
		}
		return awssdk.ToString(out.Instances[0].InstanceId), nil
	}
	// A failed launch leaves no token behind: its retry launches.
	undo := m.FailCapacity(Fault{Subnet: subnets[0]})
	if _, err := launch(subnets[0], "tok-1"); errorCode(err) != "InsufficientInstanceCapacity" {
		t.Fatalf("launch into the failing subnet: %v", err)
	}
	undo()
	first, err := launch(subnets[0], "tok-1")
	if err != nil {
		t.Fatal(err)
	}
	// The same token answers the same instance, even into a subnet that
	// fails now.
	defer m.FailCapacity(Fault{Subnet: subnets[0]})()
	again, err := launch(subnets[0], "tok-1")
	if err != nil || again != first {
		t.Errorf("relaunch with the same token: %s, %v; want %s", again, err, first)
	}
	if _, err := launch(subnets[1], "tok-1"); errorCode(err) != "IdempotentParameterMismatch" {
		t.Errorf("same token, other subnet: %v, want IdempotentParameterMismatch", err)
	}
	if _, err := launch(subnets[1], "tok-2"); err != nil {
		t.Errorf("another token: %v", err)
	}
	if n := len(m.Instances(t, map[string]string{"awstest": "token"})); n != 2 {
		t.Errorf("%d instances in moto, want 2 (one per token)", n)
	}
}
