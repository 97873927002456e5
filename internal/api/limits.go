package api

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"
)

// The rules a valid request follows, shared by the control plane (which
// enforces them) and the Terraform provider (which checks them at plan
// time, so a bad configuration fails before anything is sent).
var (
	NamePattern              = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)
	InstanceTypePattern      = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$`)
	RegionPattern            = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	RoleARNPattern           = regexp.MustCompile(`^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$`)
	WIFProviderPattern       = regexp.MustCompile(`^projects/[0-9]{1,20}/locations/global/workloadIdentityPools/[a-z0-9-]{4,32}/providers/[a-z0-9-]{4,32}$`)
	GCPServiceAccountPattern = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$`)
	DNSLabelPattern          = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	EnvNamePattern           = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	RayVersionPattern        = regexp.MustCompile(`^[0-9]+\.[0-9]+(\.[0-9]+)?([a-z0-9.+-]*)$`)
	ResourceNamePattern      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_:./-]{0,63}$`)

	AWSSubnetIDPattern           = regexp.MustCompile(`^subnet-[0-9a-f]{8,17}$`)
	AWSSecurityGroupIDPattern    = regexp.MustCompile(`^sg-[0-9a-f]{8,17}$`)
	AWSImageIDPattern            = regexp.MustCompile(`^ami-[0-9a-f]{8,17}$`)
	AWSInstanceProfileARNPattern = regexp.MustCompile(`^arn:aws(-[a-z]+)*:iam::[0-9]{12}:instance-profile/[A-Za-z0-9+=,.@_/-]{1,512}$`)
	// AWSExternalIDPattern is what IAM accepts as an sts:ExternalId, but
	// for its length (2-1224, more than a regexp repeat holds): see
	// ValidAWSExternalID.
	AWSExternalIDPattern = regexp.MustCompile(`^[A-Za-z0-9+=,.@:/_-]+$`)
)

// ValidAWSExternalID reports whether IAM accepts id as an sts:ExternalId.
func ValidAWSExternalID(id string) bool {
	return len(id) >= 2 && len(id) <= 1224 && AWSExternalIDPattern.MatchString(id)
}

// What an AWS cloud's settings may hold, with the words the control plane
// and the provider both use for a value that breaks the rule.
const (
	MaxAWSSubnets        = 16
	MaxAWSSecurityGroups = 5

	AWSRoleARNRule            = "must be an IAM role ARN like arn:aws:iam::123456789012:role/rayplane"
	AWSSubnetIDRule           = "must be a subnet id like subnet-0123456789abcdef0"
	AWSSecurityGroupIDRule    = "must be a security group id like sg-0123456789abcdef0"
	AWSImageIDRule            = "must be an AMI id like ami-0123456789abcdef0"
	AWSInstanceProfileARNRule = "must be an IAM instance profile ARN like arn:aws:iam::123456789012:instance-profile/rayplane-node"
	AWSExternalIDRule         = "must be 2-1224 characters of letters, digits and +=,.@:/_-"
)

// AWSIDListProblems answers, for each bad entry of a list of AWS ids (or
// at index -1 for the list itself), what is wrong with it: an id that does
// not match pattern (rule says how it must look), one given twice, or a list
// longer than max or shorter than min.
func AWSIDListProblems(ids []string, min, max int, pattern *regexp.Regexp, rule string) map[int]string {
	out := map[int]string{}
	switch {
	case len(ids) < min:
		out[-1] = fmt.Sprintf("must list at least %d", min)
	case len(ids) > max:
		out[-1] = fmt.Sprintf("must list at most %d", max)
	}
	seen := map[string]bool{}
	for i, id := range ids {
		switch {
		case !pattern.MatchString(id):
			out[i] = rule
		case seen[id]:
			out[i] = "is listed twice"
		}
		seen[id] = true
	}
	return out
}

// What a GCP cloud's settings may hold, with the words the control plane
// and the provider both use for a value that breaks the rule.
const (
	MaxGCPZones        = 16
	MaxGCPMachineTypes = 64
	// MaxGCPPrice bounds a declared hourly price (USD): far above any
	// machine, far below what the planner's sums lose precision at.
	MaxGCPPrice = 1_000_000.0

	GCPServiceAccountRule           = "must be a service account email like name@project.iam.gserviceaccount.com"
	GCPWorkloadIdentityProviderRule = "must look like projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>"
	GCPProjectIDRule                = "must be a project id: 6-30 characters of lower case letters, digits and '-', starting with a letter and not ending with '-'"
	GCPZoneRule                     = "must be a zone like us-central1-a"
	GCPNetworkRule                  = "must be a network name like default, or projects/<project>/global/networks/<name>"
	GCPSubnetworkRule               = "must be a subnetwork name, or projects/<project>/regions/<region>/subnetworks/<name>"
	GCPImageRule                    = "must be an image like projects/<project>/global/images/<name> or projects/<project>/global/images/family/<family>"
	GCPMachineTypeNameRule          = "must be a machine type like n2-standard-8: 1-63 lower case letters, digits and '-', starting with a letter"
)

var (
	// GCPProjectIDPattern is a project id as Resource Manager allows it.
	GCPProjectIDPattern = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	// GCPZonePattern is a zone: its region and a letter (us-central1-a).
	GCPZonePattern = regexp.MustCompile(`^[a-z]+(-[a-z]+)+[0-9]+-[a-z]$`)
	// GCPResourceNamePattern is a Compute Engine resource name (RFC 1035
	// label): a network's, a subnetwork's, an image's or its family's.
	GCPResourceNamePattern = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
	// GCPMachineTypeNamePattern is a machine type's name (n2-standard-8,
	// n2-custom-4-8192).
	GCPMachineTypeNamePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

	gcpNetworkPathPattern    = regexp.MustCompile(`^projects/([a-z][a-z0-9-]{4,28}[a-z0-9])/global/networks/([a-z]([-a-z0-9]{0,61}[a-z0-9])?)$`)
	gcpSubnetworkPathPattern = regexp.MustCompile(`^projects/([a-z][a-z0-9-]{4,28}[a-z0-9])/regions/([a-z0-9-]{1,63})/subnetworks/([a-z]([-a-z0-9]{0,61}[a-z0-9])?)$`)
	gcpImagePattern          = regexp.MustCompile(`^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/global/images/(family/)?[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
)

// GCPZoneProblem checks one of a GCP cloud's zones: a zone of region (the
// cloud's; "" skips that part of the check).
func GCPZoneProblem(zone, region string) string {
	switch {
	case !GCPZonePattern.MatchString(zone) || len(zone) > 63:
		return GCPZoneRule
	case region != "" && zone[:len(zone)-2] != region:
		return fmt.Sprintf("is not in the cloud's region %s: its zones are %s-a, %s-b, ...", region, region, region)
	}
	return ""
}

// GCPZonesProblems answers, for each bad zone (or at index -1 for the list
// itself), what is wrong with it: not a zone of region, given twice, or a
// list of none or more than MaxGCPZones.
func GCPZonesProblems(zones []string, region string) map[int]string {
	out := map[int]string{}
	switch {
	case len(zones) == 0:
		out[-1] = "must list at least one zone of the cloud's region, e.g. " + cmpOr(region, "us-central1") + "-a"
	case len(zones) > MaxGCPZones:
		out[-1] = fmt.Sprintf("must list at most %d", MaxGCPZones)
	}
	seen := map[string]bool{}
	for i, z := range zones {
		if p := GCPZoneProblem(z, region); p != "" {
			out[i] = p
		} else if seen[z] {
			out[i] = "is listed twice"
		}
		seen[z] = true
	}
	return out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// GCPNetworkProblem checks a GCP cloud's network; "" is the project's
// default network.
func GCPNetworkProblem(network string) string {
	if network == "" || GCPResourceNamePattern.MatchString(network) || gcpNetworkPathPattern.MatchString(network) {
		return ""
	}
	return GCPNetworkRule
}

// GCPSubnetworkProblem checks a GCP cloud's subnetwork ("" is none): a
// path names a subnetwork of region (the cloud's; "" skips that check).
func GCPSubnetworkProblem(subnetwork, region string) string {
	if subnetwork == "" || GCPResourceNamePattern.MatchString(subnetwork) {
		return ""
	}
	m := gcpSubnetworkPathPattern.FindStringSubmatch(subnetwork)
	switch {
	case m == nil:
		return GCPSubnetworkRule
	case region != "" && m[2] != region:
		return fmt.Sprintf("is in region %s, not the cloud's region %s", m[2], region)
	}
	return ""
}

// GCPImageProblem checks a GCP cloud's node image.
func GCPImageProblem(image string) string {
	switch {
	case image == "":
		return "is required: the nodes' boot image, with rayplaned on PATH, like projects/<project>/global/images/family/<family>"
	case !gcpImagePattern.MatchString(image):
		return GCPImageRule
	}
	return ""
}

// GCPPriceProblem checks a declared hourly price.
func GCPPriceProblem(p float64) string {
	if !(p >= 0 && p <= MaxGCPPrice) { // NaN too
		return fmt.Sprintf("must be between 0 and %g (USD per hour)", MaxGCPPrice)
	}
	return ""
}

// Limits of a valid request.
const (
	MaxGroupNodes     = 1000
	MaxWorkerGroups   = 32
	MaxCommandArgs    = 64
	MaxEnvVars        = 128
	MaxStringLen      = 4096
	MaxHeartbeatSec   = 300
	MaxLostAfter      = 100
	MaxUpscalingSpeed = 1000
	MaxDemandEntries  = 256
	MaxBundleCount    = 10000
)

// Maxima of the durations a compute config declares, in seconds. Each is
// far below what a time.Duration holds (about 292 years), so
// time.Duration(v)*time.Second never overflows, and a value accepted is
// stored and read back as it was sent.
const (
	// MaxWorkerIdleTimeoutSec bounds worker_idle_timeout_seconds: a year.
	// A worker that must never go away is a min_nodes, not a timeout.
	MaxWorkerIdleTimeoutSec = 365 * 24 * 3600
	// MaxIdleTerminationSec bounds idle_termination_seconds: ten years.
	MaxIdleTerminationSec = 10 * 365 * 24 * 3600
	// MaxUptimeSec bounds maximum_uptime_seconds: ten years.
	MaxUptimeSec = 10 * 365 * 24 * 3600
)

// The range of every timestamp a request carries (a token's expires_at,
// an agent's idle_since). The control plane stores times as int64 Unix
// nanoseconds, which end in April 2262; 2200-01-01 leaves room for
// arithmetic on top of a stored time and is a round date to document.
// Times are kept to the nanosecond: a request with more fractional digits
// is refused rather than rounded.
var (
	MinTimestamp = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxTimestamp = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// MaxStoragePrefixLen bounds the path after the bucket of a cloud storage
// location; object names may be 1,024 bytes on S3 and GCS, and the agents
// put the cluster's and node's names after the prefix.
const MaxStoragePrefixLen = 512

// Storage URL schemes.
const (
	SchemeS3  = "s3"
	SchemeGCS = "gs"
)

// CloudStorageProblem says what is wrong with loc as a cloud storage
// location, or "" when it is valid: scheme://bucket or
// scheme://bucket/prefix with a scheme of schemes, a bucket named as that
// cloud requires (S3 or GCS naming rules), and a clean prefix: segments of
// letters, digits, '-', '_', '.' and '=', none empty, "." or "..", at most
// MaxStoragePrefixLen bytes, no query or fragment.
func CloudStorageProblem(loc string, schemes ...string) string {
	shape := "must be a bucket URL like " + StorageURLExamples(schemes...)
	scheme, rest, ok := strings.Cut(loc, "://")
	if !ok || !slices.Contains(schemes, scheme) {
		return shape
	}
	if strings.ContainsAny(loc, "?#") {
		return shape + " without a query or fragment"
	}
	bucket, prefix, hasPrefix := strings.Cut(rest, "/")
	var problem string
	if scheme == SchemeS3 {
		problem = s3BucketProblem(bucket)
	} else {
		problem = gcsBucketProblem(bucket)
	}
	if problem != "" {
		return shape + ": the bucket name " + problem
	}
	if hasPrefix {
		if problem := storagePrefixProblem(prefix); problem != "" {
			return shape + ": the path after the bucket " + problem
		}
	}
	return ""
}

// S3Location splits a valid s3://bucket[/prefix] location into its bucket
// and prefix (no leading or trailing slash); ok is false for anything
// CloudStorageProblem refuses as an S3 location.
func S3Location(loc string) (bucket, prefix string, ok bool) {
	if loc == "" || CloudStorageProblem(loc, SchemeS3) != "" {
		return "", "", false
	}
	bucket, prefix, _ = strings.Cut(strings.TrimPrefix(loc, SchemeS3+"://"), "/")
	return bucket, strings.Trim(prefix, "/"), true
}

// s3BucketProblem follows the naming rules of S3 general purpose buckets
// (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
// StorageURLExamples names the shape of a storage URL of schemes, for
// messages: "s3://bucket/prefix or gs://bucket/prefix".
func StorageURLExamples(schemes ...string) string {
	ex := make([]string, len(schemes))
	for i, s := range schemes {
		ex[i] = s + "://bucket/prefix"
	}
	return strings.Join(ex, " or ")
}

func s3BucketProblem(b string) string {
	if len(b) < 3 || len(b) > 63 {
		return "must be 3-63 characters"
	}
	if p := bucketCharsProblem(b, "lower case letters, digits, '.' and '-'", func(c byte) bool { return c == '.' || c == '-' }); p != "" {
		return p
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(b, p) {
			return fmt.Sprintf("must not start with %q", p)
		}
	}
	for _, s := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(b, s) {
			return fmt.Sprintf("must not end with %q", s)
		}
	}
	return ""
}

// gcsBucketProblem follows the naming rules of Cloud Storage buckets
// (cloud.google.com/storage/docs/buckets#naming).
func gcsBucketProblem(b string) string {
	limit := 63
	if strings.Contains(b, ".") {
		limit = 222
	}
	if len(b) < 3 || len(b) > limit {
		return "must be 3-63 characters (up to 222 with dots)"
	}
	if p := bucketCharsProblem(b, "lower case letters, digits, '.', '-' and '_'", func(c byte) bool { return c == '.' || c == '-' || c == '_' }); p != "" {
		return p
	}
	for _, part := range strings.Split(b, ".") {
		if len(part) > 63 {
			return "must have at most 63 characters between dots"
		}
	}
	if strings.HasPrefix(b, "goog") {
		return `must not start with "goog"`
	}
	if strings.Contains(strings.ReplaceAll(b, "0", "o"), "google") {
		return `must not contain "google"`
	}
	return ""
}

// bucketCharsProblem holds the rules S3 and GCS share: the characters,
// a letter or digit at each end, no "..", not an IP address.
func bucketCharsProblem(b, chars string, punct func(byte) bool) string {
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	for i := 0; i < len(b); i++ {
		if c := b[i]; !alnum(c) && !punct(c) {
			return "must be " + chars
		}
	}
	if !alnum(b[0]) || !alnum(b[len(b)-1]) {
		return "must start and end with a letter or digit"
	}
	if strings.Contains(b, "..") {
		return `must not contain ".."`
	}
	if net.ParseIP(b) != nil {
		return "must not be an IP address"
	}
	return ""
}

func storagePrefixProblem(p string) string {
	if len(p) > MaxStoragePrefixLen {
		return fmt.Sprintf("must be at most %d characters", MaxStoragePrefixLen)
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return `must be a clean path: no empty segment ("//" or a '/' at either end)`
		case ".", "..":
			return `must be a clean path: no "." or ".." segment`
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '=') {
				return "must be letters, digits, '-', '_', '.', '=' and '/' between segments"
			}
		}
	}
	return ""
}
