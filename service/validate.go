package service

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rayplane/rayplane/internal/api"
)

// The Check functions validate a request, fill in defaults, and answer an
// api.CodeInvalid error naming every bad field, so a user fixes all of them
// in one round.

// The patterns and limits are api's, shared with the provider's plan-time
// checks.
var (
	namePattern         = api.NamePattern
	instanceTypePattern = api.InstanceTypePattern
	regionPattern       = api.RegionPattern
	roleARNPattern      = api.RoleARNPattern
	wifProviderPattern  = api.WIFProviderPattern
	gcpSAPattern        = api.GCPServiceAccountPattern
	dnsLabelPattern     = api.DNSLabelPattern
	envNamePattern      = api.EnvNamePattern
	rayVersionPattern   = api.RayVersionPattern
	resourceNamePattern = api.ResourceNamePattern
)

const (
	maxGroupNodes     = api.MaxGroupNodes
	maxWorkerGroups   = api.MaxWorkerGroups
	maxCommandArgs    = api.MaxCommandArgs
	maxEnvVars        = api.MaxEnvVars
	maxStringLen      = api.MaxStringLen
	maxHeartbeatSec   = api.MaxHeartbeatSec
	maxLostAfter      = api.MaxLostAfter
	maxUpscalingSpeed = api.MaxUpscalingSpeed
	maxDemandEntries  = api.MaxDemandEntries
	maxBundleCount    = api.MaxBundleCount
)

// checkText refuses what no string the runtime or the control plane uses
// may hold: NUL (it ends a C string: an argument or variable would be cut
// short where the runtime reads it) and bytes that are not UTF-8. The HTTP
// API refuses both in every string of every body before it decodes one
// (service/httpapi); this keeps the rule for every other caller.
func checkText(fe *api.FieldErrors, field, v string) bool {
	switch {
	case strings.IndexByte(v, 0) >= 0:
		fe.Add(field, "must not contain NUL characters")
	case !utf8.ValidString(v):
		fe.Add(field, "must be valid UTF-8")
	default:
		return true
	}
	return false
}

func checkName(fe *api.FieldErrors, field, v string) {
	switch {
	case v == "":
		fe.Add(field, "is required")
	case !namePattern.MatchString(v):
		fe.Add(field, "must be 1-63 characters of letters, digits, '_', '.', '-', starting with a letter or digit")
	}
}

func checkRef(fe *api.FieldErrors, field, prefix, v string) {
	switch {
	case v == "":
		fe.Add(field, "is required")
	case !ValidID(prefix, v):
		fe.Add(field, "must be an id like %s_…", prefix)
	}
}

func checkOneOf(fe *api.FieldErrors, field, v string, allowed []string) {
	if !slices.Contains(allowed, v) {
		fe.Add(field, "must be one of %s", strings.Join(allowed, ", "))
	}
}

// CheckOrganization validates an org create request.
func CheckOrganization(req *api.CreateOrganizationRequest) error {
	var fe api.FieldErrors
	checkName(&fe, "name", req.Name)
	return fe.Err()
}

// CheckToken validates a token create request at time now.
func CheckToken(req *api.CreateTokenRequest, now time.Time) error {
	var fe api.FieldErrors
	checkName(&fe, "name", req.Name)
	roles := make([]string, len(api.Roles))
	for i, r := range api.Roles {
		roles[i] = string(r)
	}
	checkOneOf(&fe, "role", string(req.Role), roles)
	if req.ExpiresAt != nil {
		// Stored as UTC Unix nanoseconds: answer it the same way from
		// the start, so the create answer and every read agree.
		t := req.ExpiresAt.UTC()
		req.ExpiresAt = &t
		switch {
		case !t.After(now):
			fe.Add("expires_at", "must be in the future")
		case t.After(api.MaxTimestamp):
			fe.Add("expires_at", "must be at most %s", api.MaxTimestamp.Format(time.RFC3339))
		}
	}
	return fe.Err()
}

// CheckCloud validates a cloud and fills in defaults. Read-only fields
// (the AWS external id, the Kubernetes token_set flag) are ignored here;
// the caller sets them.
func CheckCloud(c *api.CloudSpec) error {
	var fe api.FieldErrors
	checkName(&fe, "name", c.Name)
	checkOneOf(&fe, "provider", c.Provider, api.Providers)

	blocks := map[string]bool{api.ProviderAWS: c.AWS != nil, api.ProviderGCP: c.GCP != nil, api.ProviderKubernetes: c.Kubernetes != nil, api.ProviderSim: c.Sim != nil}
	for p, set := range blocks {
		if set && p != c.Provider {
			fe.Add(p, "must not be set when provider is %q", c.Provider)
		}
	}
	switch c.Provider {
	case api.ProviderLocal:
		if c.StorageLocation != "" {
			checkLocalPath(&fe, "storage_location", c.StorageLocation)
		}
	case api.ProviderAWS:
		checkRegion(&fe, c.Region)
		if c.AWS == nil {
			fe.Add("aws", "is required when provider is aws")
		} else {
			checkAWSCloud(&fe, c.AWS)
		}
		checkBucket(&fe, c.StorageLocation, api.SchemeS3)
	case api.ProviderGCP:
		checkRegion(&fe, c.Region)
		if c.GCP == nil {
			fe.Add("gcp", "is required when provider is gcp")
		} else {
			checkGCPCloud(&fe, c.GCP, c.Region)
		}
		checkBucket(&fe, c.StorageLocation, api.SchemeGCS)
	case api.ProviderKubernetes:
		if c.Kubernetes == nil {
			fe.Add("kubernetes", "is required when provider is kubernetes")
		} else {
			checkKubernetesCloud(&fe, c.Kubernetes)
		}
		checkBucket(&fe, c.StorageLocation, api.SchemeS3, api.SchemeGCS)
	case api.ProviderSim:
		if c.Sim == nil {
			fe.Add("sim", "is required when provider is sim")
		} else {
			for _, p := range api.SimInstanceTypesProblems(c.Sim.InstanceTypes) {
				fe.Add("sim."+p.Field, "%s", p.Reason)
			}
		}
		// Sim nodes write no logs; a location is kept for configurations
		// that will move to a real cloud, so it is checked as one.
		if c.StorageLocation != "" {
			checkBucket(&fe, c.StorageLocation, api.SchemeS3, api.SchemeGCS)
		}
	}
	if c.Region != "" && !regionPattern.MatchString(c.Region) {
		fe.Add("region", "must be lower case letters, digits and '-'")
	}
	if q := c.Quotas.MaxNodes; q != nil && *q < 1 {
		fe.Add("quotas.max_nodes", "must be >= 1 (omit it for no limit)")
	}
	if q := c.Quotas.MaxVCPUs; q != nil && *q < 1 {
		fe.Add("quotas.max_vcpus", "must be >= 1 (omit it for no limit)")
	}
	hb := &c.Heartbeat
	if hb.IntervalSeconds == 0 {
		hb.IntervalSeconds = api.DefaultHeartbeatIntervalSeconds
	}
	if hb.LostAfter == 0 {
		hb.LostAfter = api.DefaultHeartbeatLostAfter
	}
	if hb.IntervalSeconds < 1 || hb.IntervalSeconds > maxHeartbeatSec {
		fe.Add("heartbeat.interval_seconds", "must be between 1 and %d", maxHeartbeatSec)
	}
	if hb.LostAfter < 1 || hb.LostAfter > maxLostAfter {
		fe.Add("heartbeat.lost_after_intervals", "must be between 1 and %d", maxLostAfter)
	}
	return fe.Err()
}

// checkAWSCloud checks an AWS cloud's settings with api's rules (the
// provider checks the same at plan time).
func checkAWSCloud(fe *api.FieldErrors, a *api.AWSCloud) {
	if !roleARNPattern.MatchString(a.RoleARN) {
		fe.Add("aws.role_arn", api.AWSRoleARNRule)
	}
	checkAWSIDs(fe, "aws.subnet_ids", a.SubnetIDs, 1, api.MaxAWSSubnets, api.AWSSubnetIDPattern, api.AWSSubnetIDRule)
	checkAWSIDs(fe, "aws.security_group_ids", a.SecurityGroupIDs, 0, api.MaxAWSSecurityGroups, api.AWSSecurityGroupIDPattern, api.AWSSecurityGroupIDRule)
	if a.InstanceProfileARN != "" && !api.AWSInstanceProfileARNPattern.MatchString(a.InstanceProfileARN) {
		fe.Add("aws.instance_profile_arn", api.AWSInstanceProfileARNRule)
	}
	switch {
	case a.ImageID == "":
		fe.Add("aws.image_id", "is required: the AMI the nodes boot, with rayplaned on PATH")
	case !api.AWSImageIDPattern.MatchString(a.ImageID):
		fe.Add("aws.image_id", api.AWSImageIDRule)
	}
}

// checkGCPCloud checks a GCP cloud's settings with api's rules (the
// provider checks their spelling at plan time); region is the cloud's,
// which its zones and a subnetwork path must be in.
func checkGCPCloud(fe *api.FieldErrors, g *api.GCPCloud, region string) {
	switch {
	case g.ServiceAccount == "":
		fe.Add("gcp.service_account", "is required: the service account the control plane impersonates")
	case !gcpSAPattern.MatchString(g.ServiceAccount):
		fe.Add("gcp.service_account", api.GCPServiceAccountRule)
	}
	if g.WorkloadIdentityProvider != "" && !wifProviderPattern.MatchString(g.WorkloadIdentityProvider) {
		fe.Add("gcp.workload_identity_provider", api.GCPWorkloadIdentityProviderRule)
	}
	switch {
	case g.ProjectID == "":
		fe.Add("gcp.project_id", "is required: the project the nodes run in")
	case !api.GCPProjectIDPattern.MatchString(g.ProjectID):
		fe.Add("gcp.project_id", api.GCPProjectIDRule)
	}
	if !regionPattern.MatchString(region) {
		region = "" // reported as the region's problem; the zones are checked for their shape only
	}
	problems := api.GCPZonesProblems(g.Zones, region)
	if p, ok := problems[-1]; ok {
		fe.Add("gcp.zones", "%s", p)
	}
	for i := range g.Zones {
		if p, ok := problems[i]; ok {
			fe.Add(fmt.Sprintf("gcp.zones[%d]", i), "%s", p)
		}
	}
	if p := api.GCPNetworkProblem(g.Network); p != "" {
		fe.Add("gcp.network", "%s", p)
	}
	if p := api.GCPSubnetworkProblem(g.Subnetwork, region); p != "" {
		fe.Add("gcp.subnetwork", "%s", p)
	}
	// Shared VPC (a network of a host project) is refused: the subnetwork's
	// use is granted in the host project, which verification does not check,
	// so a cloud would verify and then fail every launch.
	for _, f := range []struct{ field, path string }{{"gcp.network", g.Network}, {"gcp.subnetwork", g.Subnetwork}} {
		if rest, ok := strings.CutPrefix(f.path, "projects/"); ok && g.ProjectID != "" {
			if p, _, _ := strings.Cut(rest, "/"); p != g.ProjectID {
				fe.Add(f.field, "is in project %s, not the cloud's project %s: Shared VPC networks of a host project are not supported", p, g.ProjectID)
			}
		}
	}
	if p := api.GCPImageProblem(g.Image); p != "" {
		fe.Add("gcp.image", "%s", p)
	}
	if g.NodeServiceAccount != "" && !gcpSAPattern.MatchString(g.NodeServiceAccount) {
		fe.Add("gcp.node_service_account", api.GCPServiceAccountRule)
	}
	switch {
	case len(g.MachineTypes) == 0:
		fe.Add("gcp.machine_types", "must declare at least one machine type with its price, e.g. {name: n2-standard-8, price_per_hour: 0.39}")
	case len(g.MachineTypes) > api.MaxGCPMachineTypes:
		fe.Add("gcp.machine_types", "must declare at most %d", api.MaxGCPMachineTypes)
	}
	seen := map[string]bool{}
	for i, mt := range g.MachineTypes {
		p := fmt.Sprintf("gcp.machine_types[%d]", i)
		switch {
		case mt.Name == "":
			fe.Add(p+".name", "is required")
		case !api.GCPMachineTypeNamePattern.MatchString(mt.Name):
			fe.Add(p+".name", api.GCPMachineTypeNameRule)
		case seen[mt.Name]:
			fe.Add(p+".name", "duplicates another machine type's name %q", mt.Name)
		}
		seen[mt.Name] = true
		if problem := api.GCPPriceProblem(mt.PricePerHour); problem != "" {
			fe.Add(p+".price_per_hour", "%s", problem)
		}
		if problem := api.GCPPriceProblem(mt.SpotPricePerHour); problem != "" {
			fe.Add(p+".spot_price_per_hour", "%s (0: unknown)", problem)
		}
	}
}

func checkAWSIDs(fe *api.FieldErrors, field string, ids []string, min, max int, pattern *regexp.Regexp, rule string) {
	problems := api.AWSIDListProblems(ids, min, max, pattern, rule)
	if p, ok := problems[-1]; ok {
		fe.Add(field, "%s", p)
	}
	for i := range ids {
		if p, ok := problems[i]; ok {
			fe.Add(fmt.Sprintf("%s[%d]", field, i), "%s", p)
		}
	}
}

// CheckAWSPolicies validates a request for an AWS cloud's policies.
func CheckAWSPolicies(req *api.AWSPoliciesRequest) error {
	var fe api.FieldErrors
	switch {
	case req.ExternalID == "":
		fe.Add("external_id", "is required: the cloud's aws.external_id")
	case !api.ValidAWSExternalID(req.ExternalID):
		fe.Add("external_id", api.AWSExternalIDRule)
	}
	if req.RoleARN != "" && !roleARNPattern.MatchString(req.RoleARN) {
		fe.Add("role_arn", api.AWSRoleARNRule)
	}
	if req.NodeRoleARN != "" && !roleARNPattern.MatchString(req.NodeRoleARN) {
		fe.Add("node_role_arn", api.AWSRoleARNRule)
	}
	if req.StorageLocation != "" {
		if problem := api.CloudStorageProblem(req.StorageLocation, api.SchemeS3); problem != "" {
			fe.Add("storage_location", "%s", problem)
		}
	}
	if req.Region != "" && !regionPattern.MatchString(req.Region) {
		fe.Add("region", "must be lower case letters, digits and '-'")
	}
	return fe.Err()
}

// CheckGCPRole validates a request for a GCP cloud's role.
func CheckGCPRole(req *api.GCPRoleRequest) error {
	var fe api.FieldErrors
	if req.StorageLocation != "" {
		if problem := api.CloudStorageProblem(req.StorageLocation, api.SchemeGCS); problem != "" {
			fe.Add("storage_location", "%s", problem)
		}
	}
	return fe.Err()
}

func checkRegion(fe *api.FieldErrors, region string) {
	if region == "" {
		fe.Add("region", "is required for this provider")
	}
}

// checkBucket checks a cloud storage location: a bucket URL of one of
// schemes, named by that cloud's bucket rules, with a clean prefix
// (api.CloudStorageProblem).
func checkBucket(fe *api.FieldErrors, loc string, schemes ...string) {
	if loc == "" {
		fe.Add("storage_location", "is required: a bucket URL like %s", api.StorageURLExamples(schemes...))
		return
	}
	if problem := api.CloudStorageProblem(loc, schemes...); problem != "" {
		fe.Add("storage_location", "%s", problem)
	}
}

// checkLocalPath checks the spelling of a local storage location; where it
// may lead is the use case's check (ConfineLocalStorage).
func checkLocalPath(fe *api.FieldErrors, field, p string) {
	if reason := api.LocalStorageProblem(p); reason != "" {
		fe.Add(field, "%s", reason)
	}
}

// CheckComputeConfig validates a compute config and fills in defaults.
func CheckComputeConfig(cc *api.ComputeConfigRequest) error {
	var fe api.FieldErrors
	checkName(&fe, "name", cc.Name)
	checkInstanceType(&fe, "head_node.instance_type", cc.HeadNode.InstanceType)
	if cc.WorkerGroups == nil {
		cc.WorkerGroups = []api.WorkerGroup{} // a head-only cluster; answered as [] rather than null
	}
	if len(cc.WorkerGroups) > maxWorkerGroups {
		fe.Add("worker_groups", "must have at most %d groups", maxWorkerGroups)
	}
	seen := map[string]bool{}
	sumMin, sumMax := 0, 0
	for i := range cc.WorkerGroups {
		g := &cc.WorkerGroups[i]
		p := fmt.Sprintf("worker_groups[%d]", i)
		checkName(&fe, p+".name", g.Name)
		if g.Name == "head" {
			fe.Add(p+".name", `"head" is reserved for the head node`)
		}
		if seen[g.Name] && g.Name != "" {
			fe.Add(p+".name", "duplicates another group's name %q", g.Name)
		}
		seen[g.Name] = true
		checkInstanceType(&fe, p+".instance_type", g.InstanceType)
		if g.MinNodes < 0 {
			fe.Add(p+".min_nodes", "must be >= 0")
		}
		switch {
		case g.MaxNodes < g.MinNodes:
			fe.Add(p+".max_nodes", "must be >= min_nodes")
		case g.MaxNodes > maxGroupNodes:
			fe.Add(p+".max_nodes", "must be <= %d", maxGroupNodes)
		}
		if g.Market == "" {
			g.Market = api.MarketOnDemand
		}
		checkOneOf(&fe, p+".market", g.Market, api.Markets)
		sumMin += max(g.MinNodes, 0)
		sumMax += max(g.MaxNodes, 0)
	}
	if mw := cc.MaxWorkers; mw != nil {
		switch {
		case *mw < 0:
			fe.Add("max_workers", "must be >= 0")
		case *mw < sumMin:
			fe.Add("max_workers", "must be >= the sum of worker_groups min_nodes (%d)", sumMin)
		}
	}
	if cc.WorkerIdleTimeoutSeconds == 0 {
		cc.WorkerIdleTimeoutSeconds = api.DefaultWorkerIdleTimeoutSeconds
	}
	if v := cc.WorkerIdleTimeoutSeconds; v < 0 || v > api.MaxWorkerIdleTimeoutSec {
		fe.Add("worker_idle_timeout_seconds", "must be between 0 and %d (a year; 0 means the default)", api.MaxWorkerIdleTimeoutSec)
	}
	if v := cc.IdleTerminationSeconds; v < 0 || v > api.MaxIdleTerminationSec {
		fe.Add("idle_termination_seconds", "must be between 0 and %d (ten years; 0 never ends an idle cluster)", api.MaxIdleTerminationSec)
	}
	if v := cc.MaximumUptimeSeconds; v < 0 || v > api.MaxUptimeSec {
		fe.Add("maximum_uptime_seconds", "must be between 0 and %d (ten years; 0 means no limit)", api.MaxUptimeSec)
	}
	if cc.UpscalingSpeed == 0 {
		cc.UpscalingSpeed = api.DefaultUpscalingSpeed
	}
	if cc.UpscalingSpeed < 0 || cc.UpscalingSpeed > maxUpscalingSpeed {
		fe.Add("upscaling_speed", "must be between 0 and %d", maxUpscalingSpeed)
	}
	if c := cc.MaxHourlyCost; c != nil && *c <= 0 {
		fe.Add("max_hourly_cost", "must be > 0 (omit it for no cap)")
	}
	return fe.Err()
}

func checkInstanceType(fe *api.FieldErrors, field, v string) {
	switch {
	case v == "":
		fe.Add(field, "is required")
	case !instanceTypePattern.MatchString(v):
		fe.Add(field, "must be 1-64 characters of letters, digits, '_', '.', '-'")
	}
}

// CheckCluster validates a cluster request and fills in defaults.
func CheckCluster(c *api.ClusterRequest) error {
	var fe api.FieldErrors
	checkName(&fe, "name", c.Name)
	checkRef(&fe, "cloud_id", PrefixCloud, c.CloudID)
	checkRef(&fe, "compute_config_id", PrefixComputeConfig, c.ComputeConfigID)
	if c.ComputeConfigVersion < 0 {
		fe.Add("compute_config_version", "must be >= 1 (or omitted for the latest)")
	}
	if c.DesiredState == "" {
		c.DesiredState = api.DesiredRunning
	}
	checkOneOf(&fe, "desired_state", c.DesiredState, []string{api.DesiredRunning, api.DesiredTerminated})
	rt := c.Runtime
	if checkText(&fe, "runtime.image", rt.Image) && len(rt.Image) > maxStringLen {
		fe.Add("runtime.image", "is longer than %d characters", maxStringLen)
	}
	if rt.RayVersion != "" && !rayVersionPattern.MatchString(rt.RayVersion) {
		fe.Add("runtime.ray_version", "must be a version like 2.40.0")
	}
	CheckResourceDemand(&fe, "resource_requests", c.ResourceRequests)
	checkCommand(&fe, "runtime.head_command", rt.HeadCmd)
	checkCommand(&fe, "runtime.worker_command", rt.WorkerCmd)
	if len(rt.Env) > maxEnvVars {
		fe.Add("runtime.env", "must have at most %d variables", maxEnvVars)
	}
	for _, k := range slices.Sorted(maps.Keys(rt.Env)) {
		if !envNamePattern.MatchString(k) {
			fe.Add(fmt.Sprintf("runtime.env[%q]", k), "must be a variable name: letters, digits and '_', not starting with a digit")
		}
		if v := rt.Env[k]; checkText(&fe, fmt.Sprintf("runtime.env[%q]", k), v) && len(v) > maxStringLen {
			fe.Add(fmt.Sprintf("runtime.env[%q]", k), "value is longer than %d characters", maxStringLen)
		}
	}
	return fe.Err()
}

func checkCommand(fe *api.FieldErrors, field string, argv []string) {
	if argv == nil {
		return
	}
	if len(argv) == 0 || len(argv) > maxCommandArgs {
		fe.Add(field, "must have between 1 and %d arguments", maxCommandArgs)
		return
	}
	for i, a := range argv {
		p := fmt.Sprintf("%s[%d]", field, i)
		if checkText(fe, p, a) && len(a) > maxStringLen {
			fe.Add(p, "must be at most %d characters", maxStringLen)
		}
	}
	if argv[0] == "" {
		fe.Add(field+"[0]", "must name a program")
	}
}

// CheckResourceDemand validates bundles of resource shapes: known
// strategies, positive counts and amounts, resource names as Ray allows.
func CheckResourceDemand(fe *api.FieldErrors, field string, ds []api.ResourceDemand) {
	if len(ds) > maxDemandEntries {
		fe.Add(field, "must have at most %d entries", maxDemandEntries)
		return
	}
	for i, d := range ds {
		p := fmt.Sprintf("%s[%d]", field, i)
		if d.Count < 1 || d.Count > maxBundleCount {
			fe.Add(p+".count", "must be between 1 and %d", maxBundleCount)
		}
		if d.Strategy != "" {
			checkOneOf(fe, p+".strategy", d.Strategy, api.Strategies)
		}
		if len(d.Shape) == 0 {
			fe.Add(p+".shape", "must ask for at least one resource, e.g. {\"CPU\": 1}")
		}
		for _, k := range slices.Sorted(maps.Keys(d.Shape)) {
			if !resourceNamePattern.MatchString(k) {
				fe.Add(fmt.Sprintf("%s.shape[%q]", p, k), "is not a resource name")
			}
			if v := d.Shape[k]; v <= 0 || v > 1e15 {
				fe.Add(fmt.Sprintf("%s.shape[%q]", p, k), "must be a positive amount")
			}
		}
	}
}
