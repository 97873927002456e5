package awstest

import (
	"context"
	"encoding/json"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The fixtures talk to moto directly (RawURL) as the harness: they are
// neither validated by the front nor listed in Calls.

func (m *Moto) rawCfg() awssdk.Config { return rawConfig(m.RawURL, AccessKey, SecretKey, "") }

// Network creates a VPC (10.0.0.0/16) with one subnet in each of
// us-east-1a, us-east-1b and us-east-1c (in that order), a security group
// in it, and registers an AMI; it answers their ids.
func (m *Moto) Network(t testing.TB) (subnets []string, sg string, ami string) {
	t.Helper()
	ctx := context.Background()
	client := ec2.NewFromConfig(m.rawCfg())
	vpc, err := client.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: awssdk.String("10.0.0.0/16")})
	if err != nil {
		t.Fatalf("awstest: create vpc: %v", err)
	}
	for i, zone := range []string{"us-east-1a", "us-east-1b", "us-east-1c"} {
		sn, err := client.CreateSubnet(ctx, &ec2.CreateSubnetInput{
			VpcId:            vpc.Vpc.VpcId,
			CidrBlock:        awssdk.String([]string{"10.0.0.0/20", "10.0.16.0/20", "10.0.32.0/20"}[i]),
			AvailabilityZone: awssdk.String(zone),
		})
		if err != nil {
			t.Fatalf("awstest: create subnet in %s: %v", zone, err)
		}
		subnets = append(subnets, awssdk.ToString(sn.Subnet.SubnetId))
	}
	group, err := client.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName:   awssdk.String("rayplane-nodes"),
		Description: awssdk.String("rayplane test nodes"),
		VpcId:       vpc.Vpc.VpcId,
	})
	if err != nil {
		t.Fatalf("awstest: create security group: %v", err)
	}
	img, err := client.RegisterImage(ctx, &ec2.RegisterImageInput{
		Name:               awssdk.String("rayplane-test-node"),
		Architecture:       ec2types.ArchitectureValuesX8664,
		RootDeviceName:     awssdk.String("/dev/xvda"),
		VirtualizationType: awssdk.String("hvm"),
	})
	if err != nil {
		t.Fatalf("awstest: register image: %v", err)
	}
	return subnets, awssdk.ToString(group.GroupId), awssdk.ToString(img.ImageId)
}

// CreateRole creates role name whose trust policy lets principalARN
// assume it (sts:AssumeRole) with a StringEquals sts:ExternalId condition
// on externalID, or without any condition when externalID is "", and
// puts policyJSON (when not "") as its inline policy "rayplane". It
// answers the role's ARN.
func (m *Moto) CreateRole(t testing.TB, name, principalARN, externalID, policyJSON string) (roleARN string) {
	t.Helper()
	st := map[string]any{
		"Effect":    "Allow",
		"Principal": map[string]any{"AWS": principalARN},
		"Action":    "sts:AssumeRole",
	}
	if externalID != "" {
		st["Condition"] = map[string]any{"StringEquals": map[string]any{"sts:ExternalId": externalID}}
	}
	trust, err := json.Marshal(map[string]any{"Version": "2012-10-17", "Statement": []any{st}})
	if err != nil {
		t.Fatalf("awstest: trust policy: %v", err)
	}
	roleARN = m.CreateRoleWithTrust(t, name, string(trust))
	if policyJSON != "" {
		m.PutRolePolicy(t, name, "rayplane", policyJSON)
	}
	return roleARN
}

// CreateRoleWithTrust creates role name with the trust policy given as is
// and answers its ARN.
func (m *Moto) CreateRoleWithTrust(t testing.TB, name, trustPolicyJSON string) (roleARN string) {
	t.Helper()
	out, err := iam.NewFromConfig(m.rawCfg()).CreateRole(context.Background(), &iam.CreateRoleInput{
		RoleName:                 &name,
		AssumeRolePolicyDocument: &trustPolicyJSON,
	})
	if err != nil {
		t.Fatalf("awstest: create role %s: %v", name, err)
	}
	return awssdk.ToString(out.Role.Arn)
}

// PutRolePolicy puts (or replaces) the inline policy policyName of role.
func (m *Moto) PutRolePolicy(t testing.TB, role, policyName, policyJSON string) {
	t.Helper()
	_, err := iam.NewFromConfig(m.rawCfg()).PutRolePolicy(context.Background(), &iam.PutRolePolicyInput{
		RoleName: &role, PolicyName: &policyName, PolicyDocument: &policyJSON,
	})
	if err != nil {
		t.Fatalf("awstest: put role policy %s on %s: %v", policyName, role, err)
	}
}

// AttachManagedPolicy creates a customer managed policy from policyJSON,
// attaches it to role and answers its ARN.
func (m *Moto) AttachManagedPolicy(t testing.TB, role, policyName, policyJSON string) (policyARN string) {
	t.Helper()
	ctx := context.Background()
	client := iam.NewFromConfig(m.rawCfg())
	out, err := client.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: &policyName, PolicyDocument: &policyJSON})
	if err != nil {
		t.Fatalf("awstest: create policy %s: %v", policyName, err)
	}
	if _, err := client.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: &role, PolicyArn: out.Policy.Arn}); err != nil {
		t.Fatalf("awstest: attach policy %s to %s: %v", policyName, role, err)
	}
	return awssdk.ToString(out.Policy.Arn)
}

// CreateInstanceProfile creates instance profile name holding role (when
// not "") and answers its ARN.
func (m *Moto) CreateInstanceProfile(t testing.TB, name, role string) (profileARN string) {
	t.Helper()
	ctx := context.Background()
	client := iam.NewFromConfig(m.rawCfg())
	out, err := client.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: &name})
	if err != nil {
		t.Fatalf("awstest: create instance profile %s: %v", name, err)
	}
	if role != "" {
		if _, err := client.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: &name, RoleName: &role}); err != nil {
			t.Fatalf("awstest: add role %s to instance profile %s: %v", role, name, err)
		}
	}
	return awssdk.ToString(out.InstanceProfile.Arn)
}

// CreateBucket creates an S3 bucket in us-east-1.
func (m *Moto) CreateBucket(t testing.TB, name string) {
	t.Helper()
	client := s3.NewFromConfig(m.rawCfg(), func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("awstest: create bucket %s: %v", name, err)
	}
}

// Instances answers moto's instances (every state, terminated too) whose
// tags include every tag given; no tags answers all of them.
func (m *Moto) Instances(t testing.TB, tags map[string]string) []ec2types.Instance {
	t.Helper()
	var filters []ec2types.Filter
	for k, v := range tags {
		filters = append(filters, ec2types.Filter{Name: awssdk.String("tag:" + k), Values: []string{v}})
	}
	pages := ec2.NewDescribeInstancesPaginator(ec2.NewFromConfig(m.rawCfg()), &ec2.DescribeInstancesInput{Filters: filters})
	var out []ec2types.Instance
	for pages.HasMorePages() {
		page, err := pages.NextPage(context.Background())
		if err != nil {
			t.Fatalf("awstest: describe instances: %v", err)
		}
		for _, r := range page.Reservations {
			out = append(out, r.Instances...)
		}
	}
	return out
}
