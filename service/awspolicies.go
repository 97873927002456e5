package service

import (
	"context"
	"errors"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud/aws/awspolicy"
)

// AWSPrincipalFunc answers the control plane's own AWS identity, the ARN
// sts:GetCallerIdentity gives (or the one its operator names).
type AWSPrincipalFunc func(ctx context.Context) (string, error)

// howToGiveAWSIdentity ends every answer about a missing identity.
const howToGiveAWSIdentity = "give it one through the AWS SDK's default chain (AWS_* environment variables, " +
	"shared config and credentials files, web identity, an ECS task role or an EC2 instance profile), " +
	"or name its principal with rayplaned serve --aws-principal-arn"

// AWSPolicies renders the IAM documents of an AWS cloud: the trust policy
// of its cross-account role (the control plane's principal may assume it
// with the cloud's external id), the role's permissions policy, and with a
// storage location the nodes' instance-profile policy. It reads and writes
// nothing of the organization's; principal is nil when the control plane
// has no AWS identity.
func AWSPolicies(ctx context.Context, principal AWSPrincipalFunc, req api.AWSPoliciesRequest) (api.AWSPolicies, error) {
	if err := CheckAWSPolicies(&req); err != nil {
		return api.AWSPolicies{}, err
	}
	if principal == nil {
		return api.AWSPolicies{}, api.Errorf(api.CodeUnavailable, "this control plane has no AWS identity to trust: %s", howToGiveAWSIdentity)
	}
	arn, err := principal(ctx)
	if err == nil && arn == "" {
		err = errNoPrincipal
	}
	if err != nil {
		return api.AWSPolicies{}, api.Errorf(api.CodeUnavailable, "this control plane cannot tell its own AWS identity (%v): %s", err, howToGiveAWSIdentity)
	}
	arn = awspolicy.TrustPrincipal(arn)
	out := api.AWSPolicies{
		ControlPlanePrincipal: arn,
		TrustPolicy:           awspolicy.TrustPolicy(arn, req.ExternalID),
		PermissionsPolicy: awspolicy.PermissionsPolicy(awspolicy.Params{
			Region: req.Region, NodeRoleARN: req.NodeRoleARN, StorageLocation: req.StorageLocation, RoleARN: req.RoleARN}),
	}
	if req.StorageLocation != "" {
		// CheckAWSPolicies refused anything but an S3 location.
		if out.NodePolicy, err = awspolicy.NodePolicy(req.StorageLocation, req.Region); err != nil {
			return api.AWSPolicies{}, err
		}
	}
	return out, nil
}

var errNoPrincipal = errors.New("no principal")
