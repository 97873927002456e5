package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/aws/awstest"
	"github.com/rayplane/rayplane/internal/cloud/aws/awstest/nodes"
)

// The AWS data plane end to end: a real rayplaned whose own AWS identity
// is moto's test key, a customer role created in moto from the policies
// the API renders, and a node runner that boots a real agent for every
// instance the driver launches, from the user data it wrote.

const (
	awsAccount  = "123456789012" // moto's account
	awsRoleName = "rayplane-control-plane"
	awsLogs     = "rayplane-logs-e2e"
)

// awsPlane is moto, its network, the nodes' instance profile and bucket, a
// control plane using moto, and the node runner.
type awsPlane struct {
	moto                 *awstest.Moto
	s                    *server
	subnets              []string
	sg, ami              string
	nodeRole, nodeProfil string
	runner               *nodes.Runner
	dataDir              string
	flags                []string
}

func startAWSPlane(t *testing.T) *awsPlane {
	t.Helper()
	m := awstest.Start(t)
	p := &awsPlane{moto: m, dataDir: t.TempDir(), flags: append([]string{"--listen", freePort(t)}, fastFlags...)}
	p.subnets, p.sg, p.ami = m.Network(t)
	m.CreateBucket(t, awsLogs)
	p.nodeRole = m.CreateRoleWithTrust(t, "rayplane-node", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow",`+
		`"Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)
	p.nodeProfil = m.CreateInstanceProfile(t, "rayplane-node", "rayplane-node")
	p.s = startServerEnv(t, p.dataDir, m.Env(), p.flags...)
	p.runner = nodes.Start(t, m, nodes.Options{Agent: binary, NodeRoleARN: p.nodeRole})
	return p
}

// newCloud declares an aws cloud, creates its role in moto from the
// policies the API renders for it (as the example configuration does with
// the aws provider), and verifies it.
func (p *awsPlane) newCloud(t *testing.T, name string) api.Cloud {
	t.Helper()
	roleARN := fmt.Sprintf("arn:aws:iam::%s:role/%s", awsAccount, awsRoleName+"-"+name)
	body := fmt.Sprintf(`{"name":%q,"provider":"aws","region":%q,"storage_location":"s3://%s/logs",`+
		`"heartbeat":{"interval_seconds":1,"lost_after_intervals":3},`+
		`"aws":{"role_arn":%q,"subnet_ids":[%q,%q,%q],"security_group_ids":[%q],"instance_profile_arn":%q,"image_id":%q}}`,
		name, awstest.Region, awsLogs, roleARN, p.subnets[0], p.subnets[1], p.subnets[2], p.sg, p.nodeProfil, p.ami)
	c := decodeJSON[api.Cloud](t, p.s.must(t, 201, "POST", "/v1/clouds", body))
	if c.AWS == nil || c.AWS.ExternalID == "" {
		t.Fatalf("aws cloud without an external id: %+v", c)
	}
	pol := decodeJSON[api.AWSPolicies](t, p.s.must(t, 200, "POST", "/v1/aws/policies", fmt.Sprintf(
		`{"external_id":%q,"node_role_arn":%q,"storage_location":"s3://%s/logs","region":%q}`, c.AWS.ExternalID, p.nodeRole, awsLogs, awstest.Region)))
	if got := p.moto.CreateRoleWithTrust(t, awsRoleName+"-"+name, pol.TrustPolicy); got != roleARN {
		t.Fatalf("role created as %s, declared as %s", got, roleARN)
	}
	p.moto.PutRolePolicy(t, awsRoleName+"-"+name, "rayplane", pol.PermissionsPolicy)
	p.moto.PutRolePolicy(t, "rayplane-node", "rayplane-logs-"+name, pol.NodePolicy)
	c = decodeJSON[api.Cloud](t, p.s.must(t, 200, "POST", "/v1/clouds/"+c.ID+"/verify", ""))
	if c.Status != api.CloudActive {
		t.Fatalf("cloud %s after verify: %s (%s)", c.ID, c.Status, c.StatusReason)
	}
	return c
}

// live answers the cluster's instances moto holds pending or running.
func (p *awsPlane) live(t *testing.T, clusterID string) []ec2types.Instance {
	t.Helper()
	var out []ec2types.Instance
	for _, in := range p.moto.Instances(t, map[string]string{cloud.TagCluster: clusterID}) {
		if s := in.State.Name; s == ec2types.InstanceStateNamePending || s == ec2types.InstanceStateNameRunning {
			out = append(out, in)
		}
	}
	return out
}

func tagsOf(tags []ec2types.Tag) map[string]string {
	m := map[string]string{}
	for _, tg := range tags {
		m[awssdk.ToString(tg.Key)] = awssdk.ToString(tg.Value)
	}
	return m
}

const awsComputeJSON = `{"name":%q,"head_node":{"instance_type":"t3.medium"},` +
	`"worker_groups":[{"name":"cpu","instance_type":"t3.large","min_nodes":%d,"max_nodes":4}],"worker_idle_timeout_seconds":3}`

func TestAWSClusterLifecycle(t *testing.T) {
	p := startAWSPlane(t)
	s := p.s
	cl := p.newCloud(t, "life")
	who := decodeJSON[api.WhoAmI](t, s.must(t, 200, "GET", "/v1/whoami", ""))

	cc := decodeJSON[api.ComputeConfig](t, s.must(t, 201, "POST", "/v1/compute-configs", fmt.Sprintf(awsComputeJSON, "life", 1)))
	c := decodeJSON[api.Cluster](t, s.must(t, 201, "POST", "/v1/clusters", fmt.Sprintf(clusterJSON, "life", cl.ID, cc.ID)))
	_, ns := s.waitFor(t, c.ID, 2*time.Minute, "RUNNING with a head and one worker", runningWith(1))

	// Every node is one tagged instance of the cloud's settings, booted from
	// the driver's user data (the runner started its agent from it).
	live := p.live(t, c.ID)
	if len(live) != 2 || len(ns) != 2 {
		t.Fatalf("%d instances for %d nodes (%s), want 2 and 2", len(live), len(ns), describe(ns))
	}
	byID := map[string]ec2types.Instance{}
	for _, in := range live {
		byID[awssdk.ToString(in.InstanceId)] = in
	}
	for _, n := range ns {
		in, ok := byID[n.InstanceID]
		if !ok {
			t.Fatalf("node %s records instance %q, which moto does not run", n.ID, n.InstanceID)
		}
		tags := tagsOf(in.Tags)
		want := map[string]string{cloud.TagManagedBy: cloud.ManagedByValue, cloud.TagCloud: cl.ID, cloud.TagCluster: c.ID,
			cloud.TagNode: n.ID, "rayplane-organization": who.Organization.ID}
		for k, v := range want {
			if tags[k] != v {
				t.Errorf("instance %s tag %s = %q, want %q (tags %v)", n.InstanceID, k, tags[k], v, tags)
			}
		}
		if in.IamInstanceProfile == nil || awssdk.ToString(in.IamInstanceProfile.Arn) != p.nodeProfil {
			t.Errorf("instance %s profile %v, want %s", n.InstanceID, in.IamInstanceProfile, p.nodeProfil)
		}
		if awssdk.ToString(in.SubnetId) != p.subnets[0] || awssdk.ToString(in.ImageId) != p.ami {
			t.Errorf("instance %s in %s from %s, want %s from %s", n.InstanceID, awssdk.ToString(in.SubnetId), awssdk.ToString(in.ImageId), p.subnets[0], p.ami)
		}
		if in.MetadataOptions == nil || in.MetadataOptions.HttpTokens != ec2types.HttpTokensStateRequired {
			t.Errorf("instance %s metadata options %+v, want IMDSv2 only", n.InstanceID, in.MetadataOptions)
		}
		wantType := "t3.large"
		if n.Head {
			wantType = "t3.medium"
		}
		if string(in.InstanceType) != wantType {
			t.Errorf("instance %s is %s, want %s", n.InstanceID, in.InstanceType, wantType)
		}
	}
	if booted := p.runner.Booted(); len(booted) != 2 {
		t.Errorf("agents booted for %q, want the 2 instances", booted)
	}
	p.volumesTagged(t, live, c.ID)

	// An instance gone behind the control plane's back (a spot
	// interruption, a user in the console) is a LOST node, replaced.
	var worker api.Node
	for _, n := range ns {
		if !n.Head {
			worker = n
		}
	}
	raw := p.moto.Config(t)
	raw.BaseEndpoint = awssdk.String(p.moto.RawURL)
	if _, err := ec2.NewFromConfig(raw).TerminateInstances(context.Background(), &ec2.TerminateInstancesInput{InstanceIds: []string{worker.InstanceID}}); err != nil {
		t.Fatal(err)
	}
	_, ns = s.waitFor(t, c.ID, 2*time.Minute, "the interrupted worker LOST and replaced", func(c api.Cluster, ns []api.Node) bool {
		for _, n := range ns {
			if n.ID == worker.ID && n.Status != api.NodeLost && n.Status != api.NodeTerminated {
				return false
			}
		}
		return runningWith(1)(c, ns)
	})
	if n := len(p.live(t, c.ID)); n != 2 {
		t.Fatalf("%d live instances after the replacement, want 2", n)
	}

	// Scale by resource requests: 3 bundles of 2 CPUs, t3.large has 2, the
	// head (t3.medium, 2 CPUs) and the worker hold 2 of them: one more.
	s.must(t, 200, "POST", "/v1/clusters/"+c.ID+"/resource-requests", `{"bundles":[{"shape":{"CPU":2},"count":3}]}`)
	s.waitFor(t, c.ID, 2*time.Minute, "RUNNING with two workers", runningWith(2))
	if n := len(p.live(t, c.ID)); n != 3 {
		t.Fatalf("%d live instances after scaling up, want 3", n)
	}

	// The nodes' runtime logs are in the customer's bucket, written with
	// the node's credentials, never the control plane's.
	p.waitForLogs(t, c.ID, "joins")

	// Withdraw the requests: the extra worker idles out, is drained and
	// terminated through the driver.
	s.must(t, 200, "POST", "/v1/clusters/"+c.ID+"/resource-requests", `{"bundles":[]}`)
	s.waitFor(t, c.ID, 2*time.Minute, "back to one worker", func(c api.Cluster, ns []api.Node) bool {
		return runningWith(1)(c, ns) && len(byStatus(ns, api.NodeDraining))+len(byStatus(ns, api.NodeTerminating)) == 0
	})
	waitUntil(t, time.Minute, "the idle worker's instance terminated", func() bool { return len(p.live(t, c.ID)) == 2 })

	// Delete: every instance terminated, and nothing of the cluster is left.
	s.must(t, 202, "DELETE", "/v1/clusters/"+c.ID, "")
	waitUntil(t, 2*time.Minute, "the cluster deleted", func() bool {
		status, _, _ := s.call("GET", "/v1/clusters/"+c.ID, "")
		return status == 404
	})
	if left := p.live(t, c.ID); len(left) != 0 {
		t.Fatalf("instances left after delete: %d", len(left))
	}
	waitUntil(t, time.Minute, "every agent stopped", func() bool { return len(p.runner.Running()) == 0 })

	p.checkCalls(t)
	if strings.Contains(s.stderr.String(), "rpb_") {
		t.Error("a bootstrap token reached the control plane's log")
	}
}

// volumesTagged checks that the instances' volumes carry the owner tags
// given at launch.
func (p *awsPlane) volumesTagged(t *testing.T, live []ec2types.Instance, clusterID string) {
	t.Helper()
	// Straight to moto, so that the front's record holds only what the
	// control plane and the nodes did.
	raw := p.moto.Config(t)
	raw.BaseEndpoint = awssdk.String(p.moto.RawURL)
	client := ec2.NewFromConfig(raw)
	for _, in := range live {
		out, err := client.DescribeVolumes(context.Background(), &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{
			{Name: awssdk.String("attachment.instance-id"), Values: []string{awssdk.ToString(in.InstanceId)}}}})
		if err != nil {
			t.Fatalf("describe volumes: %v", err)
		}
		if len(out.Volumes) == 0 {
			t.Errorf("instance %s has no volume", awssdk.ToString(in.InstanceId))
		}
		for _, v := range out.Volumes {
			if tags := tagsOf(v.Tags); tags[cloud.TagCluster] != clusterID || tags[cloud.TagManagedBy] != cloud.ManagedByValue {
				t.Errorf("volume %s of %s tags %v, want the owner tags", awssdk.ToString(v.VolumeId), awssdk.ToString(in.InstanceId), tags)
			}
		}
	}
}

// waitForLogs waits until the bucket holds a node's runtime log piece
// containing want, and checks who wrote it.
func (p *awsPlane) waitForLogs(t *testing.T, clusterID, want string) {
	t.Helper()
	raw := p.moto.Config(t)
	raw.BaseEndpoint = awssdk.String(p.moto.RawURL)
	client := s3.NewFromConfig(raw, func(o *s3.Options) { o.UsePathStyle = true })
	prefix := "logs/" + clusterID + "/"
	waitUntil(t, 2*time.Minute, "a runtime log with "+want+" under s3://"+awsLogs+"/"+prefix, func() bool {
		out, err := client.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: awssdk.String(awsLogs), Prefix: awssdk.String(prefix)})
		if err != nil {
			t.Fatalf("list objects: %v", err)
		}
		for _, o := range out.Contents {
			key := awssdk.ToString(o.Key)
			if !strings.Contains(key, "/runtime/") {
				t.Fatalf("object %s is not a runtime log piece", key)
			}
			obj, err := client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: awssdk.String(awsLogs), Key: o.Key})
			if err != nil {
				t.Fatalf("get %s: %v", key, err)
			}
			b, _ := io.ReadAll(obj.Body)
			obj.Body.Close()
			if strings.Contains(string(b), want) {
				return true
			}
		}
		return false
	})
	var puts int
	for _, c := range p.moto.Calls() {
		if c.Service == "s3" && strings.HasPrefix(c.Action, "PUT ") {
			puts++
			if c.AccessKey == awstest.AccessKey {
				t.Errorf("%s signed with the control plane's key: logs must be written with the node's credentials", c.Action)
			}
		}
	}
	if puts == 0 {
		t.Error("no PutObject call through the front")
	}
}

// checkCalls: in the customer account the control plane acts only through
// the assumed role (the front records the key of every call), and every EC2
// call it made is one the permissions policy grants.
func (p *awsPlane) checkCalls(t *testing.T) {
	t.Helper()
	var assumes, ec2Calls int
	for _, c := range p.moto.Calls() {
		switch {
		case c.Service == "sts" && c.Action == "AssumeRole":
			assumes++
		case c.Service == "ec2":
			ec2Calls++
			if c.AccessKey == awstest.AccessKey {
				t.Errorf("ec2 %s signed with the control plane's own key, not the customer's role", c.Action)
			}
		}
	}
	if assumes == 0 || ec2Calls == 0 {
		t.Errorf("calls through the front: %d AssumeRole, %d ec2; want both", assumes, ec2Calls)
	}
}

// TestAWSCrashBetweenRunInstancesAndRecord: rayplaned is killed after EC2
// started an instance and before the answer reached it. After a restart the
// cluster has exactly the planned instances: the driver finds the one it
// started by its tags instead of launching another, and nothing is orphaned.
func TestAWSCrashBetweenRunInstancesAndRecord(t *testing.T) {
	p := startAWSPlane(t)
	cl := p.newCloud(t, "crash")
	release := p.moto.HoldRunInstances()
	cc := decodeJSON[api.ComputeConfig](t, p.s.must(t, 201, "POST", "/v1/compute-configs", fmt.Sprintf(awsComputeJSON, "crash", 0)))
	c := decodeJSON[api.Cluster](t, p.s.must(t, 201, "POST", "/v1/clusters", fmt.Sprintf(clusterJSON, "crash", cl.ID, cc.ID)))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.moto.WaitHeld(ctx, 1); err != nil {
		t.Fatalf("no RunInstances reached moto: %v", err)
	}
	// The instance exists in moto; rayplaned has not heard of it.
	if n := len(p.live(t, c.ID)); n != 1 {
		t.Fatalf("%d instances while the answer is held, want 1", n)
	}
	if err := p.s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.s.exited
	p.s.exited <- nil
	release() // the held answer goes to a dead connection

	s2 := startServerEnv(t, p.dataDir, p.moto.Env(), p.flags...)
	_, ns := s2.waitFor(t, c.ID, 2*time.Minute, "RUNNING after the restart", runningWith(0))
	s2.afterPasses(t, c.ID, 3)
	ns = s2.nodes(t, c.ID)
	all := p.moto.Instances(t, map[string]string{cloud.TagCluster: c.ID})
	if len(all) != 1 || len(ns) != 1 || awssdk.ToString(all[0].InstanceId) != ns[0].InstanceID {
		ids := []string{}
		for _, in := range all {
			ids = append(ids, awssdk.ToString(in.InstanceId)+"/"+string(in.State.Name))
		}
		t.Fatalf("instances ever launched %q for nodes %s: want exactly the one started before the kill", ids, describe(ns))
	}
	s2.must(t, 202, "DELETE", "/v1/clusters/"+c.ID, "")
	waitUntil(t, 2*time.Minute, "no instance left", func() bool { return len(p.live(t, c.ID)) == 0 })
	if booted := p.runner.Booted(); !slices.Equal(booted, []string{ns[0].InstanceID}) {
		t.Errorf("agents booted for %q, want only %s", booted, ns[0].InstanceID)
	}
}
