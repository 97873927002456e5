package aws

import (
	"context"
	"fmt"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// CallerIdentity answers the ARN of base's identity (sts:GetCallerIdentity,
// which needs no permission): the control plane's own principal, which a
// customer's trust policy names (see awspolicy.TrustPrincipal).
func CallerIdentity(ctx context.Context, base awssdk.Config) (arn string, err error) {
	cfg := base.Copy()
	cfg.ClientLogMode = safeLogMode(cfg.ClientLogMode)
	out, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return "", fmt.Errorf("sts:GetCallerIdentity: %w", err)
	}
	if out.Arn == nil {
		return "", fmt.Errorf("sts:GetCallerIdentity answered no ARN")
	}
	return *out.Arn, nil
}
