package api

import "regexp"

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
	BucketURLPattern         = regexp.MustCompile(`^(s3|gs)://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](/.*)?$`)
	ResourceNamePattern      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_:./-]{0,63}$`)
)

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
