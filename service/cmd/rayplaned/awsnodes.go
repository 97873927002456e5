package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	rpapi "github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	awsdriver "github.com/rayplane/rayplane/internal/cloud/aws"
	"github.com/rayplane/rayplane/internal/cloud/aws/awspolicy"
)

// awsClouds hands out the AWS driver of each aws cloud. The control plane's
// own identity is the SDK's default chain (environment, shared config, web
// identity, ECS or EC2 role), loaded once at the first use; from it every
// driver assumes its cloud's role. A driver is kept per cloud, so its
// assumed-role credentials are cached and its memory of spot capacity
// errors lasts, and built anew when the cloud's settings change.
type awsClouds struct {
	log          *slog.Logger
	principalARN string // --aws-principal-arn: what trust policies name; "" asks STS

	loadOnce sync.Once
	base     awssdk.Config
	baseErr  error

	drivers driverCache[cloud.Driver]

	principalMu  sync.Mutex
	principal    string
	principalAt  time.Time
	principalErr error
}

func newAWSClouds(log *slog.Logger, principalARN string) *awsClouds {
	return &awsClouds{log: log, principalARN: principalARN}
}

func (a *awsClouds) config(ctx context.Context) (awssdk.Config, error) {
	a.loadOnce.Do(func() {
		// The region is the cloud's; the chain only gives credentials.
		a.base, a.baseErr = config.LoadDefaultConfig(context.WithoutCancel(ctx))
		if a.baseErr != nil {
			a.baseErr = fmt.Errorf("the control plane has no AWS identity: %w", a.baseErr)
		}
	})
	return a.base, a.baseErr
}

// driverFor answers the driver of an aws cloud.
func (a *awsClouds) driverFor(ctx context.Context, orgID string, c rpapi.Cloud) (cloud.Driver, error) {
	if c.AWS == nil {
		return nil, cloud.Errorf(cloud.Invalid, "driver", "the cloud has no aws settings")
	}
	base, err := a.config(ctx)
	if err != nil {
		return nil, &cloud.Error{Kind: cloud.Auth, Op: "driver", Err: err}
	}
	settings := struct {
		Region, Storage string
		AWS             *rpapi.AWSCloud
	}{c.Region, c.StorageLocation, c.AWS}
	return a.drivers.get(c.ID, settings, func() (cloud.Driver, error) {
		d, err := awsdriver.New(awsdriver.Config{
			Base: base, OrgID: orgID, CloudID: c.ID, Region: c.Region, Cloud: *c.AWS,
			StorageLocation: c.StorageLocation, Logger: a.log, // the driver names its cloud
		})
		if err != nil {
			return nil, &cloud.Error{Kind: cloud.Invalid, Op: "driver", Err: err}
		}
		return d, nil
	}, nil)
}

// principalCacheFor is how long the answer of sts:GetCallerIdentity is
// kept: the control plane's identity changes only when it is redeployed.
const principalCacheFor = 5 * time.Minute

// Principal answers the ARN customers' trust policies must name: the flag
// when given, else the caller identity the default chain resolves to (an
// assumed role's session ARN turned back into its role's ARN, which is
// what a trust policy names).
func (a *awsClouds) Principal(ctx context.Context) (string, error) {
	if a.principalARN != "" {
		return a.principalARN, nil
	}
	a.principalMu.Lock()
	defer a.principalMu.Unlock()
	if !a.principalAt.IsZero() && time.Since(a.principalAt) < principalCacheFor {
		return a.principal, a.principalErr
	}
	base, err := a.config(ctx)
	if err == nil {
		var arn string
		arn, err = awsdriver.CallerIdentity(ctx, base)
		if err == nil {
			a.principal = awspolicy.TrustPrincipal(arn)
		}
	}
	if err != nil {
		a.log.Warn("cannot find the control plane's AWS identity", "error", err)
		err = errors.New("the control plane has no AWS identity: give it credentials through the AWS SDK's default chain " +
			"(environment, shared config, an EC2 or ECS role) or name its principal with --aws-principal-arn")
	}
	a.principalErr, a.principalAt = err, time.Now()
	return a.principal, a.principalErr
}
