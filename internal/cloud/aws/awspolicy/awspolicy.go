// Package awspolicy renders the IAM documents a customer puts in an AWS
// account so the control plane and its nodes can work there: the trust
// policy of the cross-account role (the control plane's principal, with the
// external id the control plane generated), that role's least-privilege
// permissions policy, and the nodes' instance-profile policy (write logs to
// the cloud's storage location, nothing else).
//
// The permissions policy is derived from ControlPlaneCalls, the list of
// every AWS call the driver makes in the customer's account, so the policy
// and the driver cannot drift apart: the driver's verification simulates
// exactly ControlPlaneActions. The package renders text only; it imports no
// AWS SDK and does no I/O.
package awspolicy

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
)

// Version is the IAM policy language version every document uses.
const Version = "2012-10-17"

// Call is one AWS API call the driver makes with the credentials of the
// assumed role, and the IAM action that allows it.
type Call struct {
	API    string // the operation, "ec2:RunInstances"
	Action string // the IAM action it needs, "ec2:RunInstances"
	Why    string // what the driver does with it
	// Via, when set, is the driver's call during which AWS makes API
	// itself, with the caller's permissions (EC2 creating the Spot
	// service-linked role on the account's first spot launch): the driver
	// never calls API, but the role needs Action all the same.
	Via string
}

// ControlPlaneCalls is every call the driver makes in the customer's
// account. sts:AssumeRole is made by the control plane's own identity (the
// trust policy allows it) and sts:GetCallerIdentity needs no permission,
// so neither is here.
var ControlPlaneCalls = []Call{
	{"ec2:RunInstances", "ec2:RunInstances", "launch a node, tagged rayplane-managed-by=rayplane at launch", ""},
	{"ec2:RunInstances", "ec2:CreateTags", "tag the instance and its volumes in the RunInstances call itself", ""},
	{"ec2:TerminateInstances", "ec2:TerminateInstances", "terminate a node the control plane launched", ""},
	{"ec2:DescribeInstances", "ec2:DescribeInstances", "list the nodes by their rayplane tags", ""},
	{"ec2:DescribeInstanceTypes", "ec2:DescribeInstanceTypes", "describe the instance types of the catalog", ""},
	{"ec2:DescribeSubnets", "ec2:DescribeSubnets", "verify the cloud's subnets exist", ""},
	{"ec2:DescribeSecurityGroups", "ec2:DescribeSecurityGroups", "verify the cloud's security groups exist", ""},
	{"ec2:DescribeImages", "ec2:DescribeImages", "verify the cloud's image exists", ""},
	{"ec2:RunInstances", "iam:PassRole", "give a node the cloud's instance profile", ""},
	{"iam:CreateServiceLinkedRole", "iam:CreateServiceLinkedRole",
		"EC2 creates the account's Spot service-linked role (AWSServiceRoleForEC2Spot) on its first spot launch, with the caller's rights",
		"ec2:RunInstances"},
	{"iam:GetInstanceProfile", "iam:GetInstanceProfile", "verify the cloud's instance profile exists", ""},
	{"iam:SimulatePrincipalPolicy", "iam:SimulatePrincipalPolicy", "verify the role holds every action of this list", ""},
	{"s3:HeadBucket", "s3:ListBucket", "verify the cloud's storage bucket exists", ""},
}

// ControlPlaneActions answers the IAM actions of ControlPlaneCalls, each
// once, sorted.
func ControlPlaneActions() []string {
	var out []string
	for _, c := range ControlPlaneCalls {
		out = append(out, c.Action)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Params scope the permissions policy. Empty fields widen it: no Region
// allows every region, no NodeRoleARN lets the role pass any role to EC2
// (still only to EC2), no StorageLocation drops the S3 statement, no
// RoleARN lets the role simulate the policies of any role of its account
// (of the node role's account; any account without either).
type Params struct {
	Region          string // the cloud's region, "us-east-1"
	NodeRoleARN     string // the role of the nodes' instance profile
	StorageLocation string // the cloud's s3://bucket[/prefix]
	RoleARN         string // the cloud's own role, the one the policy is attached to
}

// SpotServiceName is the service of EC2 Spot's service-linked role,
// AWSServiceRoleForEC2Spot, which EC2 creates in an account on its first
// spot launch with the permissions of the caller of RunInstances.
const SpotServiceName = "spot.amazonaws.com"

// SpotServiceLinkedRole answers the ARN of EC2 Spot's service-linked role
// in account (or "*") of partition.
func SpotServiceLinkedRole(partition, account string) string {
	return "arn:" + partition + ":iam::" + account + ":role/aws-service-role/" + SpotServiceName + "/AWSServiceRoleForEC2Spot"
}

// Partition answers the ARN partition of a region: aws-cn for China,
// aws-us-gov for GovCloud, aws for the others (and for "").
func Partition(region string) string { return partition(region, "") }

// document and statement are the IAM policy grammar, in the order AWS
// writes it. Struct fields keep the keys in a fixed order and conditions are
// maps, which encoding/json writes sorted: the same input always gives the
// same bytes, so Terraform sees no diff between two renderings.
type document struct {
	Version   string      `json:"Version"`
	Statement []statement `json:"Statement"`
}

type statement struct {
	Sid       string                       `json:"Sid"`
	Effect    string                       `json:"Effect"`
	Principal map[string]string            `json:"Principal,omitempty"`
	Action    any                          `json:"Action"`             // string or []string
	Resource  any                          `json:"Resource,omitempty"` // string or []string
	Condition map[string]map[string]string `json:"Condition,omitempty"`
}

func render(stmts ...statement) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(document{Version: Version, Statement: stmts}); err != nil {
		panic(fmt.Sprintf("awspolicy: %v", err)) // only strings and maps of strings: cannot fail
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// TrustPolicy is the cross-account role's trust policy: principalARN (the
// control plane's identity, see TrustPrincipal) may assume the role only
// with externalID.
func TrustPolicy(principalARN, externalID string) string {
	return render(statement{
		Sid:       "RayplaneControlPlane",
		Effect:    "Allow",
		Principal: map[string]string{"AWS": principalARN},
		Action:    "sts:AssumeRole",
		Condition: map[string]map[string]string{"StringEquals": {"sts:ExternalId": externalID}},
	})
}

var assumedRoleARN = regexp.MustCompile(`^arn:(aws[a-z-]*):sts::([0-9]{12}):assumed-role/([^/]+)/[^/]+$`)

// TrustPrincipal answers the principal a trust policy names for a caller
// identity (sts:GetCallerIdentity's Arn). A role session
// (arn:aws:sts::111122223333:assumed-role/name/session, what EC2, ECS and web
// identity credentials are) becomes its role, arn:aws:iam::111122223333:role/name;
// a role with a path needs that path, which the session's ARN does not carry,
// so such an operator names the role outright. Other ARNs are answered as they are.
func TrustPrincipal(callerARN string) string {
	m := assumedRoleARN.FindStringSubmatch(callerARN)
	if m == nil {
		return callerARN
	}
	return "arn:" + m[1] + ":iam::" + m[2] + ":role/" + m[3]
}

// PermissionsPolicy is the cross-account role's permissions policy:
// exactly ControlPlaneActions, on the resources of the cloud's region, with
// writes limited to instances tagged as rayplane's.
func PermissionsPolicy(p Params) string {
	part := partition(p.Region, cmp.Or(p.RoleARN, p.NodeRoleARN))
	region := p.Region
	if region == "" {
		region = "*"
	}
	ec2 := func(resource string) string { return "arn:" + part + ":ec2:" + region + ":*:" + resource }
	account := "*"
	switch {
	case api.RoleARNPattern.MatchString(p.RoleARN):
		account = strings.Split(p.RoleARN, ":")[4]
	case api.RoleARNPattern.MatchString(p.NodeRoleARN):
		account = strings.Split(p.NodeRoleARN, ":")[4]
	}
	// Without the cloud's role, any role of the account: the role can
	// then read (by simulation) what the account's other roles may do.
	ownRole := "arn:" + part + ":iam::" + account + ":role/*"
	if api.RoleARNPattern.MatchString(p.RoleARN) {
		ownRole = p.RoleARN
	}
	managed := map[string]string{"aws:RequestTag/" + cloud.TagManagedBy: cloud.ManagedByValue}
	stmts := []statement{
		{
			Sid:       "LaunchTaggedInstances",
			Effect:    "Allow",
			Action:    "ec2:RunInstances",
			Resource:  ec2("instance/*"),
			Condition: map[string]map[string]string{"StringEquals": managed},
		},
		{
			// RunInstances also authorizes every resource the instance
			// uses, and a spot launch its spot instance request; none of
			// them carries the instance's request tags.
			Sid:    "LaunchWithTheCloudsNetworkAndImage",
			Effect: "Allow",
			Action: "ec2:RunInstances",
			Resource: []string{
				"arn:" + part + ":ec2:" + region + "::image/*",
				ec2("network-interface/*"),
				ec2("security-group/*"),
				ec2("spot-instances-request/*"),
				ec2("subnet/*"),
				ec2("volume/*"),
			},
		},
		{
			Sid:       "TagOnlyAtLaunch",
			Effect:    "Allow",
			Action:    "ec2:CreateTags",
			Resource:  []string{ec2("instance/*"), ec2("volume/*")},
			Condition: map[string]map[string]string{"StringEquals": {"ec2:CreateAction": "RunInstances"}},
		},
		{
			Sid:       "TerminateOwnInstances",
			Effect:    "Allow",
			Action:    "ec2:TerminateInstances",
			Resource:  ec2("instance/*"),
			Condition: map[string]map[string]string{"StringEquals": {"aws:ResourceTag/" + cloud.TagManagedBy: cloud.ManagedByValue}},
		},
		{
			// Describe calls take no resource-level permissions.
			Sid:    "Describe",
			Effect: "Allow",
			Action: []string{
				"ec2:DescribeImages",
				"ec2:DescribeInstanceTypes",
				"ec2:DescribeInstances",
				"ec2:DescribeSecurityGroups",
				"ec2:DescribeSubnets",
			},
			Resource: "*",
		},
		{
			Sid:       "PassTheNodeRoleToEC2",
			Effect:    "Allow",
			Action:    "iam:PassRole",
			Resource:  cmp.Or(p.NodeRoleARN, "*"),
			Condition: map[string]map[string]string{"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
		},
		{
			Sid:      "VerifyInstanceProfile",
			Effect:   "Allow",
			Action:   "iam:GetInstanceProfile",
			Resource: "arn:" + part + ":iam::" + account + ":instance-profile/*",
		},
		{
			Sid:      "VerifyOwnPermissions",
			Effect:   "Allow",
			Action:   "iam:SimulatePrincipalPolicy",
			Resource: ownRole,
		},
		{
			// EC2 creates this role itself on the account's first spot
			// launch, with the caller's rights; it exists afterwards.
			Sid:       "LetEC2CreateTheSpotServiceLinkedRole",
			Effect:    "Allow",
			Action:    "iam:CreateServiceLinkedRole",
			Resource:  SpotServiceLinkedRole(part, account),
			Condition: map[string]map[string]string{"StringEquals": {"iam:AWSServiceName": SpotServiceName}},
		},
	}
	if region != "*" {
		// Describe and SimulatePrincipalPolicy are not scoped by their
		// resource; the region condition keeps the EC2 ones home.
		stmts[4].Condition = map[string]map[string]string{"StringEquals": {"aws:RequestedRegion": region}}
	}
	if bucket, _, ok := api.S3Location(p.StorageLocation); ok {
		stmts = append(stmts, statement{
			Sid:      "VerifyStorageBucket",
			Effect:   "Allow",
			Action:   "s3:ListBucket",
			Resource: "arn:" + part + ":s3:::" + bucket,
		})
	}
	return render(stmts...)
}

// NodePolicy is the nodes' instance-profile policy: put objects under the
// cloud's storage location, nothing else (no read, no list, no delete: the
// control plane stores no log content and a node needs none back). The
// bucket's ARN is of region's partition (aws without a region).
func NodePolicy(storageLocation, region string) (string, error) {
	bucket, prefix, ok := api.S3Location(storageLocation)
	if !ok {
		return "", fmt.Errorf("storage location %q %s", storageLocation, cmp.Or(api.CloudStorageProblem(storageLocation, api.SchemeS3), "is not an S3 location"))
	}
	objects := bucket + "/*"
	if prefix != "" {
		objects = bucket + "/" + prefix + "/*"
	}
	return render(statement{
		Sid:      "WriteLogs",
		Effect:   "Allow",
		Action:   "s3:PutObject",
		Resource: "arn:" + Partition(region) + ":s3:::" + objects,
	}), nil
}

// partition answers the ARN partition of a region (aws-cn for China,
// aws-us-gov for GovCloud), or of the node role when no region is given.
func partition(region, roleARN string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	case region == "" && strings.HasPrefix(roleARN, "arn:aws-"):
		return strings.Split(roleARN, ":")[1]
	}
	return "aws"
}
