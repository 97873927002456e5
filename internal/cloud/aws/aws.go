// Package aws is the driver for clouds in a customer's AWS account: nodes are
// EC2 instances started through a cross-account role the customer created
// for the control plane, tagged so that listing by tags finds every instance
// the control plane started, even one whose launch was cut off by a crash.
//
// The control plane's own identity (Config.Base, the SDK's default chain) is
// used for one thing: sts:AssumeRole into the customer's role, always with
// the external id the control plane generated for the cloud. Every other
// call is made with the role's credentials, and the list of those calls is
// awspolicy.ControlPlaneCalls: the least-privilege policy the customer
// attaches to the role. A call added here must be added there.
//
// It must not: put the bootstrap payload (it holds a one-time token), the
// user data or any credential in an error or a log; touch an instance that
// does not carry rayplane-managed-by=rayplane (the policy enforces it on AWS,
// List enforces it here); trust the backend alone for idempotency (moto
// ignores ClientToken, and EC2's describe calls are eventually consistent,
// so Launch looks the node up by tag and sends a ClientToken too); do
// network I/O in New.
package aws

import (
	"cmp"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/keylock"
)

// TagOrganization is put on every instance and volume with the other
// cloud.Tag* owner tags, so a customer sharing an account between
// organizations can tell whose a node is.
const TagOrganization = cloud.TagOrganization

const (
	// DefaultSpotRetryAfter is how long prefer_spot launches of an instance
	// type go on-demand after spot had no capacity for it in any subnet.
	// Anyscale's spot-to-on-demand fallback waits a similar interval before
	// it tries spot again.
	DefaultSpotRetryAfter = 15 * time.Minute

	// sessionDuration is how long assumed-role credentials last; the cache
	// refreshes them credentialsRefreshEarly before they expire.
	sessionDuration         = time.Hour
	credentialsRefreshEarly = 5 * time.Minute
	maxSessionName          = 64
)

// Log keys.
const (
	logCloudID      = "cloud_id"
	logNodeID       = "node_id"
	logInstanceID   = "instance_id"
	logInstanceType = "instance_type"
	logSubnet       = "subnet_id"
	logMarket       = "market"
	logErr          = "err"
)

// Config configures a Driver for one cloud.
type Config struct {
	// Base is the control plane's own identity (config.LoadDefaultConfig).
	// Its Region, when set, is where STS is called (AssumeRole); every
	// other call is made in Region. With a BaseEndpoint (a test backend)
	// S3 is addressed path-style.
	Base            awssdk.Config
	OrgID, CloudID  string
	Region          string
	Cloud           api.AWSCloud
	StorageLocation string // s3://bucket[/prefix] or ""
	// SpotRetryAfter: after spot had no capacity for an instance type in
	// any subnet, prefer_spot launches of that type go on-demand for this
	// long, then try spot again. 0 means DefaultSpotRetryAfter.
	SpotRetryAfter time.Duration
	Now            func() time.Time // nil means time.Now
	Logger         *slog.Logger     // nil discards
}

// Driver runs nodes as EC2 instances in one cloud. It is safe for
// concurrent use: the reconciler's passes share one Driver per cloud, and so
// share its credentials cache and its memory of spot capacity errors.
type Driver struct {
	cfg       Config
	log       *slog.Logger
	partition string // of the role's ARN: aws, aws-cn, aws-us-gov
	account   string // of the role's ARN

	base    awssdk.Config // Config.Base in the cloud's region
	sts     *sts.Client   // with the control plane's own identity
	ec2     *ec2.Client   // this and below with the role's credentials
	iam     *iam.Client
	s3      *s3.Client
	session string // the role session name

	// pageSize bounds DescribeInstances pages; 0 lets AWS choose. Tests
	// set it small to make List paginate.
	pageSize int32

	keys keylock.Locks // one Launch at a time per idempotency key

	spot *cloud.SpotMemory

	// mismatchSince is when a Launch of an idempotency key first met
	// IdempotentParameterMismatch with no instance of its node visible in
	// any state (see Launch).
	mismatchMu    sync.Mutex
	mismatchSince map[string]time.Time
}

var _ cloud.Driver = (*Driver)(nil)

var roleARN = regexp.MustCompile(`^arn:(aws[a-z-]*):iam::([0-9]{12}):role/.+$`)

// New answers a Driver for cfg. It does no network I/O: a role that cannot
// be assumed shows in Verify (and as an auth error of every other call).
func New(cfg Config) (*Driver, error) {
	c := cfg.Cloud
	m := roleARN.FindStringSubmatch(c.RoleARN)
	switch {
	case m == nil:
		return nil, fmt.Errorf("aws driver: role arn %q is not an IAM role ARN", c.RoleARN)
	case c.ExternalID == "":
		return nil, fmt.Errorf("aws driver: the cloud has no external id")
	case cfg.Region == "":
		return nil, fmt.Errorf("aws driver: region is empty")
	case len(c.SubnetIDs) == 0:
		return nil, fmt.Errorf("aws driver: the cloud has no subnet")
	case c.ImageID == "":
		return nil, fmt.Errorf("aws driver: the cloud has no image id")
	case cfg.SpotRetryAfter < 0:
		return nil, fmt.Errorf("aws driver: spot retry interval %s is negative", cfg.SpotRetryAfter)
	}
	if cfg.SpotRetryAfter == 0 {
		cfg.SpotRetryAfter = DefaultSpotRetryAfter
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Cloud.SubnetIDs = append([]string(nil), c.SubnetIDs...)
	cfg.Cloud.SecurityGroupIDs = append([]string(nil), c.SecurityGroupIDs...)

	base := cfg.Base.Copy()
	base.Region = cfg.Region
	base.ClientLogMode = safeLogMode(base.ClientLogMode)
	// STS is called in the control plane's own region when it has one: a
	// regional STS endpoint answers only if its region is enabled in the
	// caller's account, and an opt-in region (af-south-1, ap-east-1, …)
	// the cloud runs in may be enabled in the customer's account but not
	// in the control plane's. The credentials it answers work in every
	// region of the role's partition.
	stsCfg := base.Copy()
	stsCfg.Region = cmp.Or(cfg.Base.Region, cfg.Region)
	d := &Driver{
		cfg:       cfg,
		log:       log.With(logCloudID, cfg.CloudID),
		partition: m[1],
		account:   m[2],
		base:      base,
		sts:       sts.NewFromConfig(stsCfg),
		session:   SessionName(cfg.OrgID, cfg.CloudID),
		spot:      cloud.NewSpotMemory(cfg.SpotRetryAfter, cfg.Now),

		mismatchSince: map[string]time.Time{},
	}
	provider := stscreds.NewAssumeRoleProvider(d.sts, c.RoleARN, func(o *stscreds.AssumeRoleOptions) {
		o.ExternalID = awssdk.String(c.ExternalID)
		o.RoleSessionName = d.session
		o.Duration = sessionDuration
	})
	assumed := base.Copy()
	assumed.Credentials = awssdk.NewCredentialsCache(provider, func(o *awssdk.CredentialsCacheOptions) {
		o.ExpiryWindow = credentialsRefreshEarly
	})
	d.ec2, d.iam, d.s3 = clients(assumed)
	return d, nil
}

// clients answers the EC2, IAM and S3 clients of cfg.
func clients(cfg awssdk.Config) (*ec2.Client, *iam.Client, *s3.Client) {
	noCapacityRetries := func(o *ec2.Options) {
		if r, ok := o.Retryer.(awssdk.RetryerV2); ok {
			o.Retryer = capacityNotRetried{r}
		}
	}
	return ec2.NewFromConfig(cfg, noCapacityRetries), iam.NewFromConfig(cfg), s3.NewFromConfig(cfg, func(o *s3.Options) {
		// A custom endpoint (moto, a VPC endpoint proxy) has no
		// bucket.host virtual hosts.
		o.UsePathStyle = o.UsePathStyle || cfg.BaseEndpoint != nil
	})
}

// safeLogMode drops the SDK's logging of requests, responses and signing
// from mode: requests carry the user data (a one-time token) and the
// session token header, AssumeRole's response carries credentials.
func safeLogMode(mode awssdk.ClientLogMode) awssdk.ClientLogMode {
	return mode &^ (awssdk.LogSigning | awssdk.LogRequest | awssdk.LogRequestWithBody |
		awssdk.LogResponse | awssdk.LogResponseWithBody | awssdk.LogRequestEventMessage | awssdk.LogResponseEventMessage)
}

// capacityNotRetried is a retryer that does not retry capacity errors.
// EC2 answers InsufficientInstanceCapacity with HTTP 500, which the SDK's
// retryers retry with backoff; seconds later the zone has no more
// machines, and Launch's next subnet or market is the better retry.
type capacityNotRetried struct{ awssdk.RetryerV2 }

func (r capacityNotRetried) IsErrorRetryable(err error) bool {
	return kindOf(err) != cloud.Capacity && r.RetryerV2.IsErrorRetryable(err)
}

var sessionNameBad = regexp.MustCompile(`[^\w+=,.@-]`)

// SessionName is the role session name of a cloud's assumed role,
// "rayplane-<org>-<cloud>" in the characters AWS allows, at most 64 of
// them. It shows in the customer's CloudTrail as who made each call.
func SessionName(orgID, cloudID string) string {
	s := sessionNameBad.ReplaceAllString("rayplane-"+orgID+"-"+cloudID, "-")
	if len(s) > maxSessionName {
		s = s[:maxSessionName]
	}
	return strings.TrimRight(s, "-")
}
