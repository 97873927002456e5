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
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/rayplane/rayplane/internal/cloud"
	awsdriver "github.com/rayplane/rayplane/internal/cloud/aws"
	"github.com/rayplane/rayplane/internal/cloud/aws/awstest"
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
	t    testing.TB
	moto *awstest.Moto
	opts Options
	dir  string
	ec2  *ec2.Client
	sts  *sts.Client

	mu     sync.Mutex
	agents map[string]*agentProc // by instance id
	booted []string              // every instance an agent was started for, in order
	errs   []string              // what went wrong booting an instance

	cancel context.CancelFunc
	done   chan struct{}
}

type agentProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	log  string
}

// Start begins watching moto; everything stops at the test's cleanup.
func Start(t testing.TB, m *awstest.Moto, opts Options) *Runner {
	t.Helper()
	raw := awssdk.Config{
		Region:       awstest.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(awstest.AccessKey, awstest.SecretKey, ""),
		BaseEndpoint: awssdk.String(m.RawURL),
	}
	r := &Runner{
		t: t, moto: m, opts: opts, dir: t.TempDir(),
		ec2: ec2.NewFromConfig(raw), sts: sts.NewFromConfig(raw),
		agents: map[string]*agentProc{}, done: make(chan struct{}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.loop(ctx)
	t.Cleanup(r.stop)
	return r
}

// pollEvery is how often moto is looked at: a launched instance boots
// within about this long.
const pollEvery = 200 * time.Millisecond

func (r *Runner) loop(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		r.sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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
				r.mu.Lock()
				_, known := r.agents[id]
				r.mu.Unlock()
				if !known {
					r.boot(ctx, id)
				}
			}
		}
	}
	r.mu.Lock()
	var gone []*agentProc
	for id, a := range r.agents {
		if !live[id] && a != nil {
			gone = append(gone, a)
			r.agents[id] = nil // terminated: never booted again
		}
	}
	r.mu.Unlock()
	for _, a := range gone {
		stopAgent(a, 20*time.Second)
	}
}

// boot starts the agent of instance id from its user data.
func (r *Runner) boot(ctx context.Context, id string) {
	fail := func(err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.agents[id] = nil
		r.errs = append(r.errs, fmt.Sprintf("%s: %v", id, err))
	}
	attr, err := r.ec2.DescribeInstanceAttribute(ctx, &ec2.DescribeInstanceAttributeInput{
		InstanceId: awssdk.String(id), Attribute: ec2types.InstanceAttributeNameUserData,
	})
	if err != nil {
		return // tried again next round
	}
	if attr.UserData == nil || attr.UserData.Value == nil {
		fail(errors.New("no user data"))
		return
	}
	script, err := base64.StdEncoding.DecodeString(awssdk.ToString(attr.UserData.Value))
	if err != nil {
		fail(fmt.Errorf("user data is not base64: %w", err))
		return
	}
	bootstrap, err := awsdriver.ParseUserData(string(script))
	if err != nil {
		fail(err)
		return
	}
	dir := filepath.Join(r.dir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fail(err)
		return
	}
	path := filepath.Join(dir, "bootstrap.json")
	if err := os.WriteFile(path, bootstrap, 0o600); err != nil {
		fail(err)
		return
	}
	// No instance metadata service here: an agent looking for one would
	// only wait for it.
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + os.TempDir(), "RAYPLANE_LOG_LEVEL=debug",
		"AWS_EC2_METADATA_DISABLED=true"}
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
	env = append(env, r.opts.Env...)
	logPath := filepath.Join(dir, "agent.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fail(err)
		return
	}
	cmd := exec.Command(r.opts.Agent, "agent", "--bootstrap", path)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		fail(err)
		return
	}
	a := &agentProc{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		cmd.Wait()
		logf.Close()
		close(a.done)
	}()
	r.mu.Lock()
	r.agents[id] = a
	r.booted = append(r.booted, id)
	r.mu.Unlock()
}

// stopAgent stops an agent's process group: SIGTERM, SIGKILL after grace.
func stopAgent(a *agentProc, grace time.Duration) {
	pgid := a.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(grace):
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	<-a.done
}

func (r *Runner) stop() {
	r.cancel()
	<-r.done
	r.mu.Lock()
	var all []*agentProc
	for _, a := range r.agents {
		if a != nil {
			all = append(all, a)
		}
	}
	errs := r.errs
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, a := range all {
		wg.Add(1)
		go func() { defer wg.Done(); stopAgent(a, 10*time.Second) }()
	}
	wg.Wait()
	if len(errs) > 0 {
		r.t.Errorf("nodes: instances that could not boot: %q", errs)
	}
	if r.t.Failed() {
		for _, id := range r.Booted() {
			b, _ := os.ReadFile(filepath.Join(r.dir, id, "agent.log"))
			r.t.Logf("agent of %s:\n%s", id, b)
		}
	}
}

// Booted answers every instance an agent was started for, in order.
func (r *Runner) Booted() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.booted...)
}

// Running answers the instances whose agents run now, sorted.
func (r *Runner) Running() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for id, a := range r.agents {
		if a == nil {
			continue
		}
		select {
		case <-a.done:
		default:
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}
