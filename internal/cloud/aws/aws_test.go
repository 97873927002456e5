package aws

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/aws/awspolicy"
	"github.com/rayplane/rayplane/internal/cloud/aws/awstest"
)

// The tests share one moto (it takes seconds to start) and run side by
// side; each has its own VPC, role and cloud, so their tags, faults (by
// subnet) and calls (by role) do not meet.
func TestAgainstMoto(t *testing.T) {
	m := awstest.Start(t)
	principal, err := CallerIdentity(context.Background(), m.Config(t))
	if err != nil {
		t.Fatalf("CallerIdentity: %v", err)
	}
	if !strings.HasPrefix(principal, "arn:aws:") || !strings.Contains(principal, awstest.AccountID) {
		t.Fatalf("CallerIdentity = %q", principal)
	}
	e := &env{m: m, principal: awspolicy.TrustPrincipal(principal)}

	t.Run("group", func(t *testing.T) {
		t.Run("LaunchTagsAndUserData", e.testLaunchTagsAndUserData)
		t.Run("LaunchIsIdempotent", e.testLaunchIsIdempotent)
		t.Run("ConcurrentLaunchesOfOneNode", e.testConcurrentLaunches)
		t.Run("ListFiltersAndPaginates", e.testListFiltersAndPaginates)
		t.Run("Terminate", e.testTerminate)
		t.Run("SubnetFailover", e.testSubnetFailover)
		t.Run("PreferSpot", e.testPreferSpot)
		t.Run("Spot", e.testSpot)
		t.Run("PreferSpotWithoutSpotPermission", e.testPreferSpotUnauthorized)
		t.Run("SubnetReorderKeepsTokensApart", e.testSubnetReorder)
		t.Run("TokenOfAnEndedInstance", e.testTokenOfAnEndedInstance)
		t.Run("STSInTheControlPlanesRegion", e.testSTSRegion)
		t.Run("ErrorKinds", e.testErrorKinds)
		t.Run("InstanceTypes", e.testInstanceTypes)
		t.Run("VerifyGood", e.testVerifyGood)
		t.Run("VerifyWrongExternalID", e.testVerifyWrongExternalID)
		t.Run("VerifyTrustWithoutExternalID", e.testVerifyTrustWithoutExternalID)
		t.Run("VerifyMissingPermission", e.testVerifyMissingPermission)
		t.Run("VerifyMissingResources", e.testVerifyMissingResources)
	})
	if t.Failed() {
		return
	}
	t.Run("CallsAreInThePolicy", e.testCallsAreInThePolicy)
}

type env struct {
	m         *awstest.Moto
	principal string
	mu        sync.Mutex
	n         int
}

// fixture is one cloud: its own VPC, role, instance profile and bucket.
type fixture struct {
	cfg     Config
	d       *Driver
	subnets []string
	now     *clock
	logs    *syncBuffer
	raw     *ec2.Client // moto itself, for looking behind the driver
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func (e *env) name(prefix string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	return fmt.Sprintf("%s-%d", prefix, e.n)
}

func randomID(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// cloudFixture makes a cloud whose role has awspolicy's permissions
// policy and a trust policy with the external id; mutate adjusts the
// driver's Config before New.
func (e *env) cloudFixture(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	subnets, sg, ami := e.m.Network(t)
	n := e.name("rp")
	bucket := "rayplane-logs-" + strings.ToLower(randomID(t))
	e.m.CreateBucket(t, bucket)
	nodeRole := e.m.CreateRole(t, n+"-node", "arn:aws:iam::"+awstest.AccountID+":root", "", "")
	profile := e.m.CreateInstanceProfile(t, n+"-profile", n+"-node")
	extID := "ext-" + randomID(t)
	storage := "s3://" + bucket + "/logs"
	policy := awspolicy.PermissionsPolicy(awspolicy.Params{Region: awstest.Region, NodeRoleARN: nodeRole, StorageLocation: storage})
	role := e.m.CreateRole(t, n, e.principal, extID, policy)
	f := &fixture{subnets: subnets, now: &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}, logs: &syncBuffer{}}
	f.cfg = Config{
		Base: e.m.Config(t), OrgID: "org_" + n, CloudID: "cld_" + n, Region: awstest.Region,
		Cloud: api.AWSCloud{
			RoleARN: role, ExternalID: extID, SubnetIDs: subnets, SecurityGroupIDs: []string{sg},
			InstanceProfileARN: profile, ImageID: ami,
		},
		StorageLocation: storage,
		SpotRetryAfter:  10 * time.Minute,
		Now:             f.now.Now,
		Logger:          slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mutate != nil {
		mutate(&f.cfg)
	}
	d, err := New(f.cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.d = d
	f.raw = ec2.NewFromConfig(awssdk.Config{
		Region: awstest.Region, BaseEndpoint: awssdk.String(e.m.RawURL),
		Credentials: credentials.NewStaticCredentialsProvider(awstest.AccessKey, awstest.SecretKey, ""),
	})
	return f
}

// request is a launch of node in cluster, its bootstrap holding a token
// that must appear nowhere but in the user data.
func (f *fixture) request(t *testing.T, cluster, node, market string) (cloud.LaunchRequest, string) {
	token := "rpb_" + randomID(t)
	b, err := json.Marshal(api.AgentBootstrap{ControlPlaneURL: "https://cp.example", ClusterID: cluster, NodeID: node, BootstrapToken: token})
	if err != nil {
		t.Fatal(err)
	}
	return cloud.LaunchRequest{
		NodeID: node, InstanceType: "t3.medium", Market: market,
		Tags: map[string]string{
			cloud.TagManagedBy: cloud.ManagedByValue, cloud.TagCloud: f.cfg.CloudID, cloud.TagCluster: cluster,
			cloud.TagNode: node, cloud.TagGroup: "workers",
		},
		Bootstrap: b, IdempotencyKey: node,
	}, token
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// describe answers moto's view of one instance.
func (f *fixture) describe(t *testing.T, id string) ec2types.Instance {
	t.Helper()
	out, err := f.raw.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil || len(out.Reservations) != 1 || len(out.Reservations[0].Instances) != 1 {
		t.Fatalf("describe %s: %v", id, err)
	}
	return out.Reservations[0].Instances[0]
}

func tagMap(tags []ec2types.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range tags {
		m[awssdk.ToString(t.Key)] = awssdk.ToString(t.Value)
	}
	return m
}

func (e *env) testLaunchTagsAndUserData(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, nil)
	req, token := f.request(t, "cls_a", "node_a", api.MarketOnDemand)
	inst, err := f.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	if inst.ID == "" || inst.NodeID != "node_a" || inst.InstanceType != "t3.medium" || inst.Address == "" {
		t.Fatalf("Launch = %+v", inst)
	}
	got := f.describe(t, inst.ID)
	if awssdk.ToString(got.PrivateIpAddress) != inst.Address {
		t.Errorf("address %q, instance's private IP %q", inst.Address, awssdk.ToString(got.PrivateIpAddress))
	}
	want := map[string]string{
		cloud.TagManagedBy: cloud.ManagedByValue, cloud.TagCloud: f.cfg.CloudID, cloud.TagCluster: "cls_a",
		cloud.TagNode: "node_a", cloud.TagGroup: "workers", TagOrganization: f.cfg.OrgID,
	}
	tags := tagMap(got.Tags)
	for k, v := range want {
		if tags[k] != v {
			t.Errorf("instance tag %s = %q, want %q (tags %v)", k, tags[k], v, tags)
		}
	}
	if awssdk.ToString(got.SubnetId) != f.subnets[0] {
		t.Errorf("subnet %s, want the first, %s", awssdk.ToString(got.SubnetId), f.subnets[0])
	}
	if len(got.SecurityGroups) != 1 || awssdk.ToString(got.SecurityGroups[0].GroupId) != f.cfg.Cloud.SecurityGroupIDs[0] {
		t.Errorf("security groups %+v", got.SecurityGroups)
	}
	if awssdk.ToString(got.ImageId) != f.cfg.Cloud.ImageID {
		t.Errorf("image %s", awssdk.ToString(got.ImageId))
	}
	if got.IamInstanceProfile == nil || awssdk.ToString(got.IamInstanceProfile.Arn) != f.cfg.Cloud.InstanceProfileARN {
		t.Errorf("instance profile %+v, want %s", got.IamInstanceProfile, f.cfg.Cloud.InstanceProfileARN)
	}
	if got.MetadataOptions == nil || got.MetadataOptions.HttpTokens != ec2types.HttpTokensStateRequired {
		t.Errorf("metadata options %+v: IMDSv2 is not required", got.MetadataOptions)
	}
	if got.InstanceLifecycle != "" {
		t.Errorf("on-demand launch has lifecycle %q", got.InstanceLifecycle)
	}

	// The volumes carry the same tags.
	vols, err := f.raw.DescribeVolumes(context.Background(), &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{
		{Name: awssdk.String("attachment.instance-id"), Values: []string{inst.ID}}}})
	if err != nil || len(vols.Volumes) == 0 {
		t.Fatalf("volumes of %s: %v, %d", inst.ID, err, len(vols.Volumes))
	}
	for _, v := range vols.Volumes {
		vt := tagMap(v.Tags)
		for k, want := range want {
			if vt[k] != want {
				t.Errorf("volume %s tag %s = %q, want %q", awssdk.ToString(v.VolumeId), k, vt[k], want)
			}
		}
	}

	// The user data is the script, and the bootstrap comes back out of it.
	attr, err := f.raw.DescribeInstanceAttribute(context.Background(), &ec2.DescribeInstanceAttributeInput{
		InstanceId: awssdk.String(inst.ID), Attribute: ec2types.InstanceAttributeNameUserData})
	if err != nil || attr.UserData == nil {
		t.Fatalf("user data of %s: %v", inst.ID, err)
	}
	script, err := base64.StdEncoding.DecodeString(awssdk.ToString(attr.UserData.Value))
	if err != nil {
		t.Fatalf("user data is not base64: %v", err)
	}
	payload, err := ParseUserData(string(script))
	if err != nil || !bytes.Equal(payload, req.Bootstrap) {
		t.Fatalf("ParseUserData = %q, %v; want %q", payload, err, req.Bootstrap)
	}
	if strings.Contains(f.logs.String(), token) {
		t.Errorf("the bootstrap token is in the log:\n%s", f.logs.String())
	}
}

func (e *env) testLaunchIsIdempotent(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, nil)
	req, _ := f.request(t, "cls_i", "node_i", api.MarketOnDemand)
	first, err := f.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	// A new Driver, as after a control-plane restart: nothing in memory.
	d2, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	req2, _ := f.request(t, "cls_i", "node_i", api.MarketOnDemand) // a new token, as a retried launch may have
	second, err := d2.Launch(ctxT(t), req2)
	if err != nil {
		t.Fatalf("second Launch: %v", err)
	}
	if second.ID != first.ID {
		t.Fatalf("second Launch answered %s, the first %s", second.ID, first.ID)
	}
	if all := e.m.Instances(t, map[string]string{cloud.TagNode: "node_i", cloud.TagCloud: f.cfg.CloudID}); len(all) != 1 {
		t.Fatalf("%d instances for one node, want 1", len(all))
	}
}

// testConcurrentLaunches: two passes launching the same node at once
// start one instance (moto ignores ClientToken, so only the driver's own
// serialization per key prevents the second).
func (e *env) testConcurrentLaunches(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, nil)
	req, _ := f.request(t, "cls_c", "node_c", api.MarketOnDemand)
	var wg sync.WaitGroup
	ids := make([]string, 4)
	errs := make([]error, 4)
	for i := range ids {
		wg.Go(func() {
			inst, err := f.d.Launch(ctxT(t), req)
			ids[i], errs[i] = inst.ID, err
		})
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("launches answered %v, %v", ids, errs)
		}
	}
	if all := e.m.Instances(t, map[string]string{cloud.TagNode: "node_c", cloud.TagCloud: f.cfg.CloudID}); len(all) != 1 {
		t.Fatalf("%d instances for one node, want 1", len(all))
	}
}

func (e *env) testListFiltersAndPaginates(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, nil)
	f.d.pageSize = 5
	const n = 7
	var want []string
	for i := range n {
		req, _ := f.request(t, "cls_l", fmt.Sprintf("node_l%d", i), api.MarketOnDemand)
		inst, err := f.d.Launch(ctxT(t), req)
		if err != nil {
			t.Fatalf("Launch: %v", err)
		}
		want = append(want, inst.ID)
	}
	other, _ := f.request(t, "cls_other", "node_other", api.MarketOnDemand)
	if _, err := f.d.Launch(ctxT(t), other); err != nil {
		t.Fatalf("Launch: %v", err)
	}

	before := e.describeCalls(f)
	got, err := f.d.List(ctxT(t), map[string]string{cloud.TagCloud: f.cfg.CloudID, cloud.TagCluster: "cls_l"})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if pages := e.describeCalls(f) - before; pages < 2 {
		t.Errorf("List of %d instances with pages of 5 made %d DescribeInstances calls", n, pages)
	}
	var ids []string
	for _, inst := range got {
		ids = append(ids, inst.ID)
		if inst.Tags[cloud.TagCluster] != "cls_l" || inst.NodeID == "" || inst.Address == "" ||
			(inst.State != cloud.InstancePending && inst.State != cloud.InstanceRunning) {
			t.Errorf("List answered %+v", inst)
		}
	}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("List = %v, want %v", ids, want)
	}

	// The whole cloud: all eight. Another cloud's tag: none.
	if all, err := f.d.List(ctxT(t), map[string]string{cloud.TagCloud: f.cfg.CloudID}); err != nil || len(all) != n+1 {
		t.Fatalf("List of the cloud = %d instances, %v; want %d", len(all), err, n+1)
	}
	if none, err := f.d.List(ctxT(t), map[string]string{cloud.TagCloud: "cld_nobody"}); err != nil || len(none) != 0 {
		t.Fatalf("List of another cloud = %v, %v", none, err)
	}
}

// describeCalls counts the DescribeInstances calls made with f's role.
func (e *env) describeCalls(f *fixture) int {
	n := 0
	for _, c := range e.m.Calls() {
		if c.Role == f.cfg.Cloud.RoleARN && c.Action == "DescribeInstances" {
			n++
		}
	}
	return n
}

func (e *env) testTerminate(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, nil)
	req, _ := f.request(t, "cls_t", "node_t", api.MarketOnDemand)
	inst, err := f.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	tags := map[string]string{cloud.TagCloud: f.cfg.CloudID}
	if got, err := f.d.List(ctxT(t), tags); err != nil || len(got) != 1 {
		t.Fatalf("List before Terminate = %v, %v", got, err)
	}
	if err := f.d.Terminate(ctxT(t), inst.ID); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	if got, err := f.d.List(ctxT(t), tags); err != nil || len(got) != 0 {
		t.Fatalf("List after Terminate = %v, %v", got, err)
	}
	if s := f.describe(t, inst.ID).State.Name; s != ec2types.InstanceStateNameShuttingDown && s != ec2types.InstanceStateNameTerminated {
		t.Fatalf("instance is %s after Terminate", s)
	}
	if err := f.d.Terminate(ctxT(t), inst.ID); err != nil {
		t.Fatalf("second Terminate: %v", err)
	}
	if err := f.d.Terminate(ctxT(t), "i-0123456789abcdef0"); err != nil {
		t.Fatalf("Terminate of an unknown instance: %v", err)
	}
}

func (e *env) testSubnetFailover(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, nil)
	undo0 := e.m.FailCapacity(awstest.Fault{Subnet: f.subnets[0]})
	req, _ := f.request(t, "cls_f", "node_f", api.MarketOnDemand)
	inst, err := f.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("Launch with no capacity in the first subnet: %v", err)
	}
	if got := awssdk.ToString(f.describe(t, inst.ID).SubnetId); got != f.subnets[1] {
		t.Fatalf("launched in %s, want the second subnet %s", got, f.subnets[1])
	}
	// A capacity error is not retried by the SDK in the same subnet.
	if n := e.runCalls(f, func(c awstest.Call) bool { return c.Code == "InsufficientInstanceCapacity" }); n != 1 {
		t.Errorf("%d RunInstances answered InsufficientInstanceCapacity, want 1 (no retry in the same subnet)", n)
	}

	// No capacity anywhere: a capacity error naming each subnet.
	undo1 := e.m.FailCapacity(awstest.Fault{Subnet: f.subnets[1]})
	undo2 := e.m.FailCapacity(awstest.Fault{Subnet: f.subnets[2]})
	defer undo1()
	defer undo2()
	defer undo0()
	req2, _ := f.request(t, "cls_f", "node_f2", api.MarketOnDemand)
	_, err = f.d.Launch(ctxT(t), req2)
	if cloud.KindOf(err) != cloud.Capacity {
		t.Fatalf("Launch with no capacity anywhere = %v, want a capacity error", err)
	}
	for _, s := range f.subnets {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not name subnet %s: %v", s, err)
		}
	}
}

// runCalls counts f's role's RunInstances calls that match.
func (e *env) runCalls(f *fixture, match func(awstest.Call) bool) int {
	n := 0
	for _, c := range e.m.Calls() {
		if c.Role == f.cfg.Cloud.RoleARN && c.Action == "RunInstances" && match(c) {
			n++
		}
	}
	return n
}

func (e *env) testPreferSpot(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, nil)
	var undos []func()
	for _, s := range f.subnets {
		undos = append(undos, e.m.FailCapacity(awstest.Fault{Subnet: s, Spot: true}))
	}
	launch := func(node string) ec2types.Instance {
		t.Helper()
		req, _ := f.request(t, "cls_p", node, api.MarketPreferSpot)
		inst, err := f.d.Launch(ctxT(t), req)
		if err != nil {
			t.Fatalf("Launch %s: %v", node, err)
		}
		return f.describe(t, inst.ID)
	}
	// No spot capacity in any subnet: on-demand, in the first subnet.
	got := launch("node_p1")
	if got.InstanceLifecycle == ec2types.InstanceLifecycleTypeSpot || awssdk.ToString(got.SubnetId) != f.subnets[0] {
		t.Fatalf("fallback launched %s in %s, want on-demand in %s", got.InstanceLifecycle, awssdk.ToString(got.SubnetId), f.subnets[0])
	}
	if n := e.runCalls(f, func(c awstest.Call) bool { return c.Code == "InsufficientInstanceCapacity" }); n != len(f.subnets) {
		t.Fatalf("%d spot attempts failed, want one per subnet (%d)", n, len(f.subnets))
	}
	for _, undo := range undos {
		undo()
	}
	// Spot has capacity again, but within SpotRetryAfter prefer_spot stays
	// on-demand without trying it.
	f.now.Add(9 * time.Minute)
	attempts := e.runCalls(f, func(awstest.Call) bool { return true })
	if got := launch("node_p2"); got.InstanceLifecycle == ec2types.InstanceLifecycleTypeSpot {
		t.Fatal("within SpotRetryAfter prefer_spot launched spot")
	}
	if n := e.runCalls(f, func(awstest.Call) bool { return true }) - attempts; n != 1 {
		t.Fatalf("within SpotRetryAfter a launch made %d RunInstances, want 1 (on-demand only)", n)
	}
	// After it, spot again.
	f.now.Add(2 * time.Minute)
	if got := launch("node_p3"); got.InstanceLifecycle != ec2types.InstanceLifecycleTypeSpot {
		t.Fatalf("after SpotRetryAfter prefer_spot launched %q, want spot", got.InstanceLifecycle)
	}
	if !strings.Contains(f.logs.String(), "no capacity") {
		t.Errorf("the fallback is not logged:\n%s", f.logs.String())
	}
}

func (e *env) testSpot(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, nil)
	req, _ := f.request(t, "cls_s", "node_s", api.MarketSpot)
	inst, err := f.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	if got := f.describe(t, inst.ID); got.InstanceLifecycle != ec2types.InstanceLifecycleTypeSpot {
		t.Fatalf("spot launch has lifecycle %q", got.InstanceLifecycle)
	}
	// spot never falls back to on-demand.
	for _, s := range f.subnets {
		defer e.m.FailCapacity(awstest.Fault{Subnet: s, Spot: true})()
	}
	req2, _ := f.request(t, "cls_s", "node_s2", api.MarketSpot)
	if _, err := f.d.Launch(ctxT(t), req2); cloud.KindOf(err) != cloud.Capacity {
		t.Fatalf("spot Launch without spot capacity = %v, want a capacity error", err)
	}
	if n := len(e.m.Instances(t, map[string]string{cloud.TagNode: "node_s2"})); n != 0 {
		t.Fatalf("spot Launch without capacity started %d instances", n)
	}
}

// testPreferSpotUnauthorized: a role that may not launch spot (a policy
// without the spot-instances-request resource, or no right to let EC2
// create the Spot service-linked role) is an auth error of the spot
// attempt: prefer_spot launches on-demand and says why, spot fails.
func (e *env) testPreferSpotUnauthorized(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, nil)
	for _, s := range f.subnets {
		defer e.m.FailCapacity(awstest.Fault{Subnet: s, Spot: true, Code: "UnauthorizedOperation"})()
	}
	req, _ := f.request(t, "cls_u", "node_u", api.MarketPreferSpot)
	inst, err := f.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("prefer_spot Launch without spot permission: %v", err)
	}
	if got := f.describe(t, inst.ID); got.InstanceLifecycle == ec2types.InstanceLifecycleTypeSpot {
		t.Fatal("prefer_spot launched spot")
	}
	if n := e.runCalls(f, func(c awstest.Call) bool { return c.Code == "UnauthorizedOperation" }); n != 1 {
		t.Errorf("%d spot attempts, want 1 (authorization is not the subnet's)", n)
	}
	if !strings.Contains(f.logs.String(), "spot launch not authorized") {
		t.Errorf("the fallback's reason is not logged:\n%s", f.logs.String())
	}
	req2, _ := f.request(t, "cls_u", "node_u2", api.MarketSpot)
	if _, err := f.d.Launch(ctxT(t), req2); cloud.KindOf(err) != cloud.Auth {
		t.Fatalf("spot Launch without spot permission = %v, want an auth error", err)
	}
}

// testSubnetReorder: a node's launch retried after its cloud's subnets
// were reordered sends each subnet its own token, never another subnet's
// (which EC2 answers with IdempotentParameterMismatch).
func (e *env) testSubnetReorder(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, nil)
	req, _ := f.request(t, "cls_r", "node_r", api.MarketOnDemand)
	first, err := f.d.Launch(ctxT(t), req)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	// The instance ended before the node recorded it (a spot
	// interruption while the control plane was down).
	if err := f.d.Terminate(ctxT(t), first.ID); err != nil {
		t.Fatal(err)
	}
	cfg := f.cfg
	cfg.Cloud.SubnetIDs = []string{f.subnets[1], f.subnets[0], f.subnets[2]}
	d2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	req2, _ := f.request(t, "cls_r", "node_r", api.MarketOnDemand)
	second, err := d2.Launch(ctxT(t), req2)
	if err != nil {
		t.Fatalf("Launch after the subnets were reordered: %v", err)
	}
	if got := awssdk.ToString(f.describe(t, second.ID).SubnetId); second.ID == first.ID || got != f.subnets[1] {
		t.Fatalf("launched %s in %s, want a new instance in %s", second.ID, got, f.subnets[1])
	}
	if n := e.runCalls(f, func(c awstest.Call) bool { return c.Code == "IdempotentParameterMismatch" }); n != 0 {
		t.Errorf("%d RunInstances met IdempotentParameterMismatch: a subnet got another's token", n)
	}
}

// testTokenOfAnEndedInstance: when the instance a node's client token
// started has ended before the node recorded it, the node's next launch
// (with a new bootstrap token, so other parameters) meets
// IdempotentParameterMismatch: the driver then launches with the next
// token, instead of answering a transient error at every pass forever.
func (e *env) testTokenOfAnEndedInstance(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, nil)
	var ids []string
	for i := range 3 {
		req, _ := f.request(t, "cls_m", "node_m", api.MarketOnDemand)
		inst, err := f.d.Launch(ctxT(t), req)
		if err != nil {
			t.Fatalf("launch %d: %v", i, err)
		}
		if slices.Contains(ids, inst.ID) {
			t.Fatalf("launch %d answered %s again, an ended instance", i, inst.ID)
		}
		ids = append(ids, inst.ID)
		// While it lives, a retry answers it.
		again, _ := f.request(t, "cls_m", "node_m", api.MarketOnDemand)
		if got, err := f.d.Launch(ctxT(t), again); err != nil || got.ID != inst.ID {
			t.Fatalf("retry of launch %d = %v, %v; want %s", i, got.ID, err, inst.ID)
		}
		if err := f.d.Terminate(ctxT(t), inst.ID); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.runCalls(f, func(c awstest.Call) bool { return c.Code == "IdempotentParameterMismatch" }); n != 3 {
		t.Errorf("%d mismatches, want 3 (0 + 1 + 2 spent tokens)", n)
	}

	// The same key for another node, whose ended instance is not visible:
	// the token's instance may be one DescribeInstances does not show yet,
	// so the mismatch is transient until it has lasted mismatchSettle.
	req, _ := f.request(t, "cls_m", "node_m_other", api.MarketOnDemand)
	req.IdempotencyKey = "node_m"
	if _, err := f.d.Launch(ctxT(t), req); cloud.KindOf(err) != cloud.Transient || !strings.Contains(err.Error(), "IdempotentParameterMismatch") {
		t.Fatalf("Launch with a spent token and no instance visible = %v, want a transient mismatch", err)
	}
	if n := len(e.m.Instances(t, map[string]string{cloud.TagNode: "node_m_other"})); n != 0 {
		t.Fatalf("%d instances launched while the token's instance could be on its way", n)
	}
	f.now.Add(mismatchSettle)
	req, _ = f.request(t, "cls_m", "node_m_other", api.MarketOnDemand)
	req.IdempotencyKey = "node_m"
	if _, err := f.d.Launch(ctxT(t), req); err != nil {
		t.Fatalf("Launch once the mismatch settled: %v", err)
	}
}

// testSTSRegion: AssumeRole goes to the control plane's own region, the
// other calls to the cloud's: an opt-in region enabled in the customer's
// account need not be in the control plane's.
func (e *env) testSTSRegion(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	regions := map[string]map[string]bool{} // service -> regions
	f := e.cloudFixture(t, func(c *Config) {
		c.Base.Region = "us-west-2"
		c.Base.APIOptions = append(slices.Clone(c.Base.APIOptions), func(stack *middleware.Stack) error {
			return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("recordRegion",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					mu.Lock()
					svc := awsmiddleware.GetServiceID(ctx)
					if regions[svc] == nil {
						regions[svc] = map[string]bool{}
					}
					regions[svc][awsmiddleware.GetRegion(ctx)] = true
					mu.Unlock()
					return next.HandleInitialize(ctx, in)
				}), middleware.After)
		})
	})
	if err := f.d.Verify(ctxT(t)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	req, _ := f.request(t, "cls_g", "node_g", api.MarketOnDemand)
	if _, err := f.d.Launch(ctxT(t), req); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := slices.Sorted(maps.Keys(regions["STS"])); !slices.Equal(got, []string{"us-west-2"}) {
		t.Errorf("STS called in %v, want the control plane's us-west-2 only", got)
	}
	if got := slices.Sorted(maps.Keys(regions["EC2"])); !slices.Equal(got, []string{awstest.Region}) {
		t.Errorf("EC2 called in %v, want the cloud's %s", got, awstest.Region)
	}
}

func (e *env) testErrorKinds(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, nil)
	req, token := f.request(t, "cls_e", "node_e", api.MarketOnDemand)
	check := func(name string, err error, want cloud.Kind) {
		t.Helper()
		if err == nil || cloud.KindOf(err) != want {
			t.Errorf("%s: %v, want a %s error", name, err, want)
			return
		}
		if strings.Contains(err.Error(), token) {
			t.Errorf("%s: the error holds the bootstrap token: %v", name, err)
		}
	}

	for name, mutate := range map[string]func(*Config){
		"unknown subnet":         func(c *Config) { c.Cloud.SubnetIDs = []string{"subnet-0123456789abcdef0"} },
		"unknown security group": func(c *Config) { c.Cloud.SecurityGroupIDs = []string{"sg-0123456789abcdef0"} },
		"unknown instance profile": func(c *Config) {
			c.Cloud.InstanceProfileARN = "arn:aws:iam::" + awstest.AccountID + ":instance-profile/nosuch"
		},
	} {
		g := e.cloudFixture(t, mutate)
		_, err := g.d.Launch(ctxT(t), req)
		check(name, err, cloud.Invalid)
	}
	// moto runs instances of any image and any type: EC2's answers to
	// those are injected, to prove the mapping from EC2's error shape.
	for i, w := range []struct {
		code string
		kind cloud.Kind
	}{
		{"InvalidAMIID.NotFound", cloud.Invalid},
		{"InvalidParameterValue", cloud.Invalid},
		{"VcpuLimitExceeded", cloud.Quota},
		{"InstanceLimitExceeded", cloud.Quota},
		{"UnauthorizedOperation", cloud.Auth},
	} {
		undo := e.m.FailCapacity(awstest.Fault{Subnet: f.subnets[0], Code: w.code})
		r, _ := f.request(t, "cls_e", fmt.Sprintf("node_e%d", i), api.MarketOnDemand)
		_, err := f.d.Launch(ctxT(t), r)
		undo()
		check(w.code, err, w.kind)
		if err != nil && !strings.Contains(err.Error(), w.code) {
			t.Errorf("%s: the error does not say so: %v", w.code, err)
		}
	}

	wrong := e.cloudFixture(t, func(c *Config) { c.Cloud.ExternalID = "ext-wrong" })
	_, err := wrong.d.Launch(ctxT(t), req)
	check("wrong external id at Launch", err, cloud.Auth)
	_, err = wrong.d.List(ctxT(t), nil)
	check("wrong external id at List", err, cloud.Auth)
	check("wrong external id at Terminate", wrong.d.Terminate(ctxT(t), "i-0123456789abcdef0"), cloud.Auth)

	// A deadline is respected and transient.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = f.d.List(ctx, nil)
	check("cancelled context", err, cloud.Transient)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled List: %v does not wrap context.Canceled", err)
	}
}

func (e *env) testInstanceTypes(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, nil)
	types, err := f.d.InstanceTypes(ctxT(t))
	if err != nil {
		t.Fatalf("InstanceTypes: %v", err)
	}
	if len(types) < len(onDemandPrices)/2 {
		t.Fatalf("InstanceTypes answered %d of the %d priced types", len(types), len(onDemandPrices))
	}
	const gib = 1 << 30
	want := map[string]cloud.InstanceType{
		"t3.medium":     {Name: "t3.medium", CPUs: 2, MemoryBytes: 4 * gib, PricePerHour: 0.0416},
		"m5.large":      {Name: "m5.large", CPUs: 2, MemoryBytes: 8 * gib, PricePerHour: 0.096},
		"g4dn.xlarge":   {Name: "g4dn.xlarge", CPUs: 4, MemoryBytes: 16 * gib, GPUs: 1, PricePerHour: 0.526},
		"g4dn.12xlarge": {Name: "g4dn.12xlarge", CPUs: 48, MemoryBytes: 192 * gib, GPUs: 4, PricePerHour: 3.912},
	}
	for _, it := range types {
		if _, ok := onDemandPrices[it.Name]; !ok || it.PricePerHour <= 0 || it.CPUs <= 0 || it.MemoryBytes <= 0 || it.SpotPrice != 0 {
			t.Errorf("InstanceTypes answered %+v", it)
		}
		if w, ok := want[it.Name]; ok {
			if it != w {
				t.Errorf("%s = %+v, want %+v", it.Name, it, w)
			}
			delete(want, it.Name)
		}
	}
	for name := range want {
		t.Errorf("InstanceTypes lacks %s", name)
	}
}

func (e *env) testVerifyGood(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, nil)
	if err := f.d.Verify(ctxT(t)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

// verifyFailures answers Verify's failures, checking its kind.
func verifyFailures(t *testing.T, err error, kind cloud.Kind) []cloud.Failure {
	t.Helper()
	var ve *cloud.VerifyError
	if cloud.KindOf(err) != kind || !errors.As(err, &ve) {
		t.Fatalf("Verify = %v, want a %s *cloud.VerifyError", err, kind)
	}
	return ve.Failures
}

func hasFailure(fs []cloud.Failure, check, substr string) bool {
	for _, f := range fs {
		if f.Check == check && strings.Contains(f.Problem, substr) {
			return true
		}
	}
	return false
}

func (e *env) testVerifyWrongExternalID(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, func(c *Config) { c.Cloud.ExternalID = "ext-wrong" })
	err := f.d.Verify(ctxT(t))
	fs := verifyFailures(t, err, cloud.Auth)
	if len(fs) != 1 || !hasFailure(fs, CheckAssumeRole, "AccessDenied") || !strings.Contains(err.Error(), CheckAssumeRole) {
		t.Fatalf("Verify = %v", err)
	}
}

func (e *env) testVerifyTrustWithoutExternalID(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, nil)
	// The same permissions, a trust policy without the condition.
	role := e.m.CreateRole(t, e.name("rp-noext"), e.principal, "",
		awspolicy.PermissionsPolicy(awspolicy.Params{Region: awstest.Region, StorageLocation: f.cfg.StorageLocation}))
	cfg := f.cfg
	cfg.Cloud.RoleARN = role
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = d.Verify(ctxT(t))
	fs := verifyFailures(t, err, cloud.Invalid)
	if len(fs) != 1 || !hasFailure(fs, CheckExternalID, "does not require the external id") {
		t.Fatalf("Verify = %v", err)
	}
}

func (e *env) testVerifyMissingPermission(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, nil)
	// An explicit deny of one action on top of the policy.
	e.m.PutRolePolicy(t, f.cfg.Cloud.RoleARN[strings.LastIndex(f.cfg.Cloud.RoleARN, "/")+1:], "deny-terminate",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"ec2:TerminateInstances","Resource":"*"}]}`)
	err := f.d.Verify(ctxT(t))
	fs := verifyFailures(t, err, cloud.Invalid)
	if len(fs) != 1 || !hasFailure(fs, CheckPermissions, "ec2:TerminateInstances") {
		t.Fatalf("Verify = %v", err)
	}

	// A role holding only some of the actions: each missing one named.
	g := e.cloudFixture(t, nil)
	name := e.name("rp-partial")
	role := e.m.CreateRole(t, name, e.principal, g.cfg.Cloud.ExternalID,
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ec2:Describe*","iam:GetInstanceProfile","iam:SimulatePrincipalPolicy","s3:ListBucket"],"Resource":"*"}]}`)
	cfg := g.cfg
	cfg.Cloud.RoleARN = role
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = d.Verify(ctxT(t))
	fs = verifyFailures(t, err, cloud.Invalid)
	for _, action := range []string{"ec2:RunInstances", "ec2:CreateTags", "ec2:TerminateInstances", "iam:PassRole", "iam:CreateServiceLinkedRole"} {
		if !hasFailure(fs, CheckPermissions, action) {
			t.Errorf("Verify does not name %s: %v", action, err)
		}
	}
	if len(fs) != 5 {
		t.Errorf("Verify = %v, want 5 failures", err)
	}
}

func (e *env) testVerifyMissingResources(t *testing.T) {
	t.Parallel()
	f := e.cloudFixture(t, func(c *Config) {
		c.Cloud.SubnetIDs = append(c.Cloud.SubnetIDs, "subnet-0123456789abcdef0")
		c.Cloud.SecurityGroupIDs = append(c.Cloud.SecurityGroupIDs, "sg-0123456789abcdef0")
		c.Cloud.ImageID = "ami-0123456789abcdef0"
		c.Cloud.InstanceProfileARN = "arn:aws:iam::" + awstest.AccountID + ":instance-profile/nosuch"
		c.StorageLocation = "s3://rayplane-nosuch-bucket/logs"
	})
	err := f.d.Verify(ctxT(t))
	t.Logf("Verify: %v", err)
	fs := verifyFailures(t, err, cloud.Invalid)
	for _, w := range []struct{ check, substr string }{
		{CheckSubnets, "subnet-0123456789abcdef0"},
		{CheckSecurityGroups, "sg-0123456789abcdef0"},
		{CheckImage, "ami-0123456789abcdef0"},
		{CheckInstanceProfile, "instance-profile/nosuch"},
		{CheckStorageBucket, "rayplane-nosuch-bucket"},
	} {
		if !hasFailure(fs, w.check, w.substr) || !strings.Contains(err.Error(), w.substr) {
			t.Errorf("Verify does not name %s %s: %v", w.check, w.substr, err)
		}
	}
	if len(fs) != 5 {
		t.Errorf("Verify = %v, want 5 failures", err)
	}
}

// testCallsAreInThePolicy: every call the driver made with a role's
// credentials in these tests is one of awspolicy.ControlPlaneCalls, so the
// least-privilege policy is complete.
func (e *env) testCallsAreInThePolicy(t *testing.T) {
	allowed := map[string]string{}
	var byAWS []awspolicy.Call
	for _, c := range awspolicy.ControlPlaneCalls {
		if c.Via != "" {
			// AWS makes it during the driver's call Via (EC2 creating
			// the Spot service-linked role): the driver never does.
			byAWS = append(byAWS, c)
			continue
		}
		allowed[c.API] = c.Action
	}
	seen := map[string]bool{}
	for _, c := range e.m.Calls() {
		if c.Role == "" {
			// The control plane's own identity: AssumeRole (the trust
			// policy's) and GetCallerIdentity (no permission) only.
			if c.AccessKey == awstest.AccessKey && !(c.Service == "sts" && (c.Action == "AssumeRole" || c.Action == "GetCallerIdentity")) {
				t.Errorf("the control plane's own identity called %s:%s", c.Service, c.Action)
			}
			continue
		}
		api := c.Service + ":" + c.Action
		if c.Service == "s3" {
			method, path, _ := strings.Cut(c.Action, " ")
			if method == "HEAD" && strings.Count(strings.Trim(path, "/"), "/") == 0 {
				api = "s3:HeadBucket"
			}
		}
		if _, ok := allowed[api]; !ok {
			t.Errorf("the driver called %s, which awspolicy.ControlPlaneCalls lacks (or marks as made by AWS)", api)
		}
		seen[api] = true
	}
	for api := range allowed {
		if !seen[api] {
			t.Errorf("awspolicy.ControlPlaneCalls lists %s, which the tests never saw the driver call", api)
		}
	}
	for _, c := range byAWS {
		if !seen[c.Via] {
			t.Errorf("awspolicy.ControlPlaneCalls lists %s as made by AWS during %s, which the tests never saw the driver call", c.API, c.Via)
		}
	}
}
