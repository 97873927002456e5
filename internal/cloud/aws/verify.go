package aws

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/aws/awspolicy"
)

// The checks of Verify, as a failure names them.
const (
	CheckAssumeRole      = "assume role"
	CheckExternalID      = "external id required"
	CheckPermissions     = "permissions"
	CheckSubnets         = "subnets"
	CheckSecurityGroups  = "security groups"
	CheckImage           = "image"
	CheckInstanceProfile = "instance profile"
	CheckStorageBucket   = "storage bucket"
)

// verification records the failed checks of Verify; failed knows the
// driver's errors.
type verification struct{ cloud.Verification }

// failed records err of a call that should have worked.
func (v *verification) failed(check string, err error, format string, args ...any) {
	v.Fail(check, kindOf(err), "%s: %s", fmt.Sprintf(format, args...), brief(err))
}

// Verify checks, with fresh credentials rather than the cache's, that:
//  1. the control plane can assume the role with the external id;
//  2. it cannot without (else anyone who learns the role's ARN and the
//     control plane's account could make the control plane act in the
//     customer's account: the confused deputy);
//  3. the role holds every action of awspolicy.ControlPlaneActions, by
//     iam:SimulatePrincipalPolicy on the resources the driver uses them on;
//  4. the subnets, security groups (in the subnets' VPCs) and image exist;
//  5. the instance profile, when set, exists and has a role;
//  6. the storage bucket, when set, exists and is the role's account's.
//
// It answers nil or one *cloud.Error whose Err is a *cloud.VerifyError naming
// every failed check: of kind auth when the role cannot be assumed (the
// other checks need it and are not run), transient when every failure was
// a timeout or throttling, invalid otherwise.
func (d *Driver) Verify(ctx context.Context) error {
	var v verification
	role, err := d.assumeRole(ctx, true)
	if err != nil {
		v.failed(CheckAssumeRole, err, "sts:AssumeRole on %s with the external id (the other checks need the role)", d.cfg.Cloud.RoleARN)
	}
	if _, err := d.assumeRole(ctx, false); err == nil {
		v.Fail(CheckExternalID, cloud.Invalid, "the role's trust policy does not require the external id: add the condition StringEquals sts:ExternalId")
	} else if k := kindOf(err); k != cloud.Auth && k != cloud.Invalid {
		v.failed(CheckExternalID, err, "could not tell whether the role requires the external id")
	}
	if role == nil {
		return v.Result(true)
	}

	cfg := d.base.Copy()
	cfg.Credentials = awssdk.NewCredentialsCache(credentials.NewStaticCredentialsProvider(
		awssdk.ToString(role.AccessKeyId), awssdk.ToString(role.SecretAccessKey), awssdk.ToString(role.SessionToken)))
	ec2c, iamc, s3c := clients(cfg)

	d.verifyNetwork(ctx, ec2c, &v)
	nodeRole := d.verifyInstanceProfile(ctx, iamc, &v)
	d.verifyPermissions(ctx, iamc, nodeRole, &v)
	d.verifyStorage(ctx, s3c, &v)
	return v.Result(false)
}

// assumeRole calls sts:AssumeRole with the control plane's own identity,
// with or without the external id, for the shortest session AWS allows.
func (d *Driver) assumeRole(ctx context.Context, withExternalID bool) (*ststypes.Credentials, error) {
	in := &sts.AssumeRoleInput{
		RoleArn:         awssdk.String(d.cfg.Cloud.RoleARN),
		RoleSessionName: awssdk.String(d.session),
		DurationSeconds: awssdk.Int32(900),
	}
	if withExternalID {
		in.ExternalId = awssdk.String(d.cfg.Cloud.ExternalID)
	}
	out, err := d.sts.AssumeRole(ctx, in)
	if err != nil {
		return nil, err
	}
	if out.Credentials == nil {
		return nil, fmt.Errorf("sts:AssumeRole answered no credentials")
	}
	return out.Credentials, nil
}

// verifyNetwork checks the subnets, security groups and image.
func (d *Driver) verifyNetwork(ctx context.Context, c *ec2.Client, v *verification) {
	cl := d.cfg.Cloud
	subnetVPC := map[string]string{}
	out, err := c.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{
		{Name: awssdk.String("subnet-id"), Values: cl.SubnetIDs}}})
	if err != nil {
		v.failed(CheckSubnets, err, "ec2:DescribeSubnets")
	} else {
		for _, s := range out.Subnets {
			subnetVPC[awssdk.ToString(s.SubnetId)] = awssdk.ToString(s.VpcId)
		}
		for _, id := range cl.SubnetIDs {
			if _, ok := subnetVPC[id]; !ok {
				v.Fail(CheckSubnets, cloud.Invalid, "subnet %s does not exist in %s", id, d.cfg.Region)
			}
		}
	}

	if len(cl.SecurityGroupIDs) > 0 {
		out, err := c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
			{Name: awssdk.String("group-id"), Values: cl.SecurityGroupIDs}}})
		if err != nil {
			v.failed(CheckSecurityGroups, err, "ec2:DescribeSecurityGroups")
		} else {
			sgVPC := map[string]string{}
			for _, g := range out.SecurityGroups {
				sgVPC[awssdk.ToString(g.GroupId)] = awssdk.ToString(g.VpcId)
			}
			for _, id := range cl.SecurityGroupIDs {
				vpc, ok := sgVPC[id]
				if !ok {
					v.Fail(CheckSecurityGroups, cloud.Invalid, "security group %s does not exist in %s", id, d.cfg.Region)
					continue
				}
				// RunInstances refuses a security group of another VPC
				// than the subnet's.
				var elsewhere []string
				for _, s := range cl.SubnetIDs {
					if sv, ok := subnetVPC[s]; ok && sv != vpc {
						elsewhere = append(elsewhere, s+" ("+sv+")")
					}
				}
				if len(elsewhere) > 0 {
					v.Fail(CheckSecurityGroups, cloud.Invalid, "security group %s is in %s, not in the VPC of subnet %s", id, vpc, strings.Join(elsewhere, ", "))
				}
			}
		}
	}

	images, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Filters: []ec2types.Filter{
		{Name: awssdk.String("image-id"), Values: []string{cl.ImageID}}}})
	switch {
	case err != nil:
		v.failed(CheckImage, err, "ec2:DescribeImages")
	case len(images.Images) == 0:
		v.Fail(CheckImage, cloud.Invalid, "image %s does not exist in %s (or is not shared with the account)", cl.ImageID, d.cfg.Region)
	case awssdk.ToString(images.Images[0].ImageId) != cl.ImageID:
		v.Fail(CheckImage, cloud.Transient, "ec2:DescribeImages answered %q for image %s", awssdk.ToString(images.Images[0].ImageId), cl.ImageID)
	case images.Images[0].State != ec2types.ImageStateAvailable:
		v.Fail(CheckImage, cloud.Invalid, "image %s is %s, not available", cl.ImageID, images.Images[0].State)
	}
}

// verifyInstanceProfile checks the instance profile, when the cloud names
// one; it answers the profile's role, or "".
func (d *Driver) verifyInstanceProfile(ctx context.Context, c *iam.Client, v *verification) string {
	arn := d.cfg.Cloud.InstanceProfileARN
	if arn == "" {
		return ""
	}
	name := arn[strings.LastIndex(arn, "/")+1:]
	out, err := c.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: awssdk.String(name)})
	switch {
	case errorCode(err) == "NoSuchEntity":
		v.Fail(CheckInstanceProfile, cloud.Invalid, "instance profile %s does not exist", arn)
		return ""
	case err != nil:
		v.failed(CheckInstanceProfile, err, "iam:GetInstanceProfile %s", name)
		return ""
	}
	p := out.InstanceProfile
	if p == nil {
		v.Fail(CheckInstanceProfile, cloud.Transient, "iam:GetInstanceProfile %s answered no instance profile", name)
		return ""
	}
	if got := awssdk.ToString(p.Arn); got != arn {
		v.Fail(CheckInstanceProfile, cloud.Invalid, "instance profile %s is %s: the path or account differs", name, got)
		return ""
	}
	if len(p.Roles) == 0 || !roleARN.MatchString(awssdk.ToString(p.Roles[0].Arn)) {
		v.Fail(CheckInstanceProfile, cloud.Invalid, "instance profile %s has no role: nodes would have no credentials", arn)
		return ""
	}
	return awssdk.ToString(p.Roles[0].Arn)
}

// contextEntries are the condition keys of the driver's requests, so a
// policy that conditions its statements on them (as awspolicy's does) is
// simulated as AWS evaluates the real calls.
func (d *Driver) contextEntries() []iamtypes.ContextEntry {
	entry := func(k, v string) iamtypes.ContextEntry {
		return iamtypes.ContextEntry{ContextKeyName: awssdk.String(k), ContextKeyType: iamtypes.ContextKeyTypeEnumString, ContextKeyValues: []string{v}}
	}
	return []iamtypes.ContextEntry{
		entry("aws:RequestTag/"+cloud.TagManagedBy, cloud.ManagedByValue),
		entry("aws:ResourceTag/"+cloud.TagManagedBy, cloud.ManagedByValue),
		entry("ec2:ResourceTag/"+cloud.TagManagedBy, cloud.ManagedByValue),
		entry("ec2:CreateAction", "RunInstances"),
		entry("iam:PassedToService", "ec2.amazonaws.com"),
		entry("aws:RequestedRegion", d.cfg.Region),
		entry("iam:AWSServiceName", awspolicy.SpotServiceName),
	}
}

// simulatedResources answers the resources the driver uses action on, as
// ARNs for iam:SimulatePrincipalPolicy; ok is false for an action the
// cloud's settings do not need (iam:PassRole without an instance profile,
// s3:ListBucket without a storage location).
func (d *Driver) simulatedResources(action, nodeRole string) (resources []string, ok bool) {
	cl := d.cfg.Cloud
	ec2ARN := func(resource string) string {
		return "arn:" + d.partition + ":ec2:" + d.cfg.Region + ":" + d.account + ":" + resource
	}
	instance, volume := ec2ARN("instance/*"), ec2ARN("volume/*")
	switch action {
	case "ec2:RunInstances":
		// A spot launch also authorizes its spot instance request.
		out := []string{instance, volume, ec2ARN("network-interface/*"), ec2ARN("spot-instances-request/*"),
			"arn:" + d.partition + ":ec2:" + d.cfg.Region + "::image/" + cl.ImageID}
		for _, s := range cl.SubnetIDs {
			out = append(out, ec2ARN("subnet/"+s))
		}
		for _, g := range cl.SecurityGroupIDs {
			out = append(out, ec2ARN("security-group/"+g))
		}
		return out, true
	case "ec2:CreateTags":
		return []string{instance, volume}, true
	case "ec2:TerminateInstances":
		return []string{instance}, true
	case "iam:PassRole":
		return []string{nodeRole}, nodeRole != ""
	case "iam:GetInstanceProfile":
		return []string{cl.InstanceProfileARN}, cl.InstanceProfileARN != ""
	case "iam:SimulatePrincipalPolicy":
		return []string{cl.RoleARN}, true
	case "iam:CreateServiceLinkedRole":
		// EC2 creates the Spot service-linked role with the role's
		// rights on the account's first spot launch.
		return []string{awspolicy.SpotServiceLinkedRole(d.partition, d.account)}, true
	case "s3:ListBucket":
		bucket, _, ok := d.storageBucket()
		return []string{"arn:" + d.partition + ":s3:::" + bucket}, ok
	}
	// Describe calls take no resource-level permissions; an action
	// added to the call list later is checked on every resource.
	return []string{"*"}, true
}

// verifyPermissions simulates the role's policies for every action the
// driver needs and names each one denied, with the resources it is denied
// on.
func (d *Driver) verifyPermissions(ctx context.Context, c *iam.Client, nodeRole string, v *verification) {
	contextEntries := d.contextEntries()
	for _, action := range awspolicy.ControlPlaneActions() {
		resources, ok := d.simulatedResources(action, nodeRole)
		if !ok {
			continue
		}
		pages := iam.NewSimulatePrincipalPolicyPaginator(c, &iam.SimulatePrincipalPolicyInput{
			PolicySourceArn: awssdk.String(d.cfg.Cloud.RoleARN),
			ActionNames:     []string{action},
			ResourceArns:    resources,
			ContextEntries:  contextEntries,
		})
		denied := map[string]string{} // resource -> decision
		for n := 0; pages.HasMorePages(); n++ {
			if n == maxListPages {
				v.Fail(CheckPermissions, cloud.Transient, "iam:SimulatePrincipalPolicy for %s answered more than %d pages", action, maxListPages)
				break
			}
			page, err := pages.NextPage(ctx)
			if err != nil {
				v.failed(CheckPermissions, err, "iam:SimulatePrincipalPolicy for %s", action)
				if kindOf(err) == cloud.Auth {
					return // no simulation will work: one failure says it
				}
				break
			}
			for _, r := range page.EvaluationResults {
				if r.EvalDecision == iamtypes.PolicyEvaluationDecisionTypeAllowed {
					continue
				}
				if len(r.ResourceSpecificResults) == 0 {
					denied[awssdk.ToString(r.EvalResourceName)] = string(r.EvalDecision)
				}
				for _, rr := range r.ResourceSpecificResults {
					if rr.EvalResourceDecision != iamtypes.PolicyEvaluationDecisionTypeAllowed {
						denied[awssdk.ToString(rr.EvalResourceName)] = string(rr.EvalResourceDecision)
					}
				}
			}
		}
		if len(denied) > 0 {
			var on []string
			for _, res := range slices.Sorted(maps.Keys(denied)) {
				on = append(on, res+" ("+denied[res]+")")
			}
			v.Fail(CheckPermissions, cloud.Invalid, "the role is not allowed %s on %s", action, strings.Join(on, ", "))
		}
	}
}

// storageBucket answers the bucket of the cloud's storage location.
func (d *Driver) storageBucket() (bucket, problem string, ok bool) {
	loc := d.cfg.StorageLocation
	if loc == "" {
		return "", "", false
	}
	bucket, _, ok = api.S3Location(loc)
	if !ok {
		return "", api.CloudStorageProblem(loc, api.SchemeS3), false
	}
	return bucket, "", true
}

// verifyStorage checks that the storage bucket exists and is the role's
// account's: nodes write their logs there with their own credentials.
func (d *Driver) verifyStorage(ctx context.Context, c *s3.Client, v *verification) {
	bucket, problem, ok := d.storageBucket()
	if !ok {
		if problem != "" {
			v.Fail(CheckStorageBucket, cloud.Invalid, "storage location %q %s", d.cfg.StorageLocation, problem)
		}
		return
	}
	_, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: awssdk.String(bucket), ExpectedBucketOwner: awssdk.String(d.account)})
	switch code := errorCode(err); {
	case err == nil:
	case code == "NotFound" || code == "NoSuchBucket":
		v.Fail(CheckStorageBucket, cloud.Invalid, "bucket %s does not exist", bucket)
	case code == "MovedPermanently" || code == "PermanentRedirect":
		// S3 redirects a request for a bucket of another region; the
		// nodes' agents write to the cloud's region only.
		v.Fail(CheckStorageBucket, cloud.Invalid, "bucket %s is not in the cloud's region %s", bucket, d.cfg.Region)
	case code == "Forbidden" || code == "AccessDenied":
		v.Fail(CheckStorageBucket, cloud.Invalid, "bucket %s: access denied (the role needs s3:ListBucket on it, and it must belong to account %s)", bucket, d.account)
	default:
		v.failed(CheckStorageBucket, err, "s3:HeadBucket %s", bucket)
	}
}
