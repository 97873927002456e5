// Package nodes plays EC2's part that moto cannot: booting instances. A
// Runner watches moto's instances and, for each one the driver launched
// that is pending or running, starts a real `rayplaned agent` on this
// machine from the user data the driver wrote — the same script an AMI
// would run at boot — with the credentials of the instance profile's role
// (assumed in moto) as an EC2 instance would get them from its metadata.
// When the instance is terminated, its agent is stopped, as the machine
// would be.
//
// It is a test helper (it lives beside awstest, not in it, because it
// reads user data with the driver's own parser, and the driver's tests
// import awstest).
package nodes

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/rayplane/rayplane/internal/cloud"
	awsdriver "github.com/rayplane/rayplane/internal/cloud/aws"
	"github.com/rayplane/rayplane/internal/cloud/aws/awstest"
	"github.com/rayplane/rayplane/internal/cloud/nodetest"
)

// Options configure a Runner.
type Options struct {
	// Agent is the rayplaned binary the instances run.
	Agent string
	// NodeRoleARN is the role of the instance profile: agents get
	// temporary credentials of it (AWS_ACCESS_KEY_ID, …) and moto's front
	// as their endpoint, so what they write to S3 is signed as the node.
	// Empty gives agents no AWS credentials at all.
	NodeRoleARN string
	// Env is added to every agent's environment.
	Env []string
}

// Runner runs an agent for every live instance rayplane launched in moto.
type Runner struct {
	moto   *awstest.Moto
	opts   Options
	ec2    *ec2.Client
	sts    *sts.Client
	agents *nodetest.Agents // by instance id
}

// Start begins watching moto; everything stops at the test's cleanup.
func Start(t testing.TB, m *awstest.Moto, opts Options) *Runner {
	t.Helper()
	raw := awssdk.Config{
		Region:       awstest.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(awstest.AccessKey, awstest.SecretKey, ""),
		BaseEndpoint: awssdk.String(m.RawURL),
	}
	r := &Runner{moto: m, opts: opts, ec2: ec2.NewFromConfig(raw), sts: sts.NewFromConfig(raw)}
	r.agents = nodetest.New(t, opts.Agent)
	r.agents.Watch(r.sync)
	return r
}

// sync starts agents for new live instances and stops those of instances
// that are gone.
func (r *Runner) sync(ctx context.Context) {
	live := map[string]bool{}
	pages := ec2.NewDescribeInstancesPaginator(r.ec2, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: awssdk.String("tag:" + cloud.TagManagedBy), Values: []string{cloud.ManagedByValue}},
	}})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return // moto is stopping with the test; the next round tells
		}
		for _, res := range page.Reservations {
			for _, in := range res.Instances {
				if in.State == nil || (in.State.Name != ec2types.InstanceStateNamePending && in.State.Name != ec2types.InstanceStateNameRunning) {
					continue
				}
				id := awssdk.ToString(in.InstanceId)
				live[id] = true
				if !r.agents.Known(id) {
					r.boot(ctx, id)
				}
			}
		}
	}
	r.agents.StopGone(func(id string) bool { return live[id] })
}

// boot starts the agent of instance id from its user data.
func (r *Runner) boot(ctx context.Context, id string) {
	attr, err := r.ec2.DescribeInstanceAttribute(ctx, &ec2.DescribeInstanceAttributeInput{
		InstanceId: awssdk.String(id), Attribute: ec2types.InstanceAttributeNameUserData,
	})
	if err != nil {
		return // tried again next round
	}
	if attr.UserData == nil || attr.UserData.Value == nil {
		r.agents.Fail(id, id, errors.New("no user data"))
		return
	}
	script, err := base64.StdEncoding.DecodeString(awssdk.ToString(attr.UserData.Value))
	if err != nil {
		r.agents.Fail(id, id, fmt.Errorf("user data is not base64: %w", err))
		return
	}
	bootstrap, err := awsdriver.ParseUserData(string(script))
	if err != nil {
		r.agents.Fail(id, id, err)
		return
	}
	// No instance metadata service here: an agent looking for one would
	// only wait for it.
	env := []string{"RAYPLANE_LOG_LEVEL=debug", "AWS_EC2_METADATA_DISABLED=true"}
	if r.opts.NodeRoleARN != "" {
		out, err := r.sts.AssumeRole(ctx, &sts.AssumeRoleInput{
			RoleArn: awssdk.String(r.opts.NodeRoleARN), RoleSessionName: awssdk.String(id),
		})
		if err != nil {
			return // tried again next round
		}
		c := out.Credentials
		env = append(env,
			"AWS_ACCESS_KEY_ID="+awssdk.ToString(c.AccessKeyId),
			"AWS_SECRET_ACCESS_KEY="+awssdk.ToString(c.SecretAccessKey),
			"AWS_SESSION_TOKEN="+awssdk.ToString(c.SessionToken),
			"AWS_ENDPOINT_URL="+r.moto.URL,
			"AWS_REGION="+awstest.Region,
		)
	}
	if err := r.agents.Start(id, id, bootstrap, append(env, r.opts.Env...)); err != nil {
		r.agents.Fail(id, id, err)
	}
}

// Booted answers every instance an agent was started for, in order.
func (r *Runner) Booted() []string { return r.agents.Booted() }

// Running answers the instances whose agents run now, sorted.
func (r *Runner) Running() []string { return r.agents.Running() }
