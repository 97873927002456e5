package aws

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
)

// liveStates are the instance states a node is alive in.
var liveStates = []string{string(types.InstanceStateNamePending), string(types.InstanceStateNameRunning)}

// Launch starts one instance for req, or answers the live one already
// started for req.NodeID. Subnets are tried in the cloud's order, the next
// one after a capacity error; spot goes through InstanceMarketOptions and,
// for prefer_spot, falls back to on-demand when no subnet has spot capacity
// (or the account's spot quota is reached, or the role may not launch spot).
func (d *Driver) Launch(ctx context.Context, req cloud.LaunchRequest) (cloud.Instance, error) {
	const op = "launch"
	switch {
	case req.NodeID == "":
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node id is empty")
	case req.IdempotencyKey == "":
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: idempotency key is empty", req.NodeID)
	case req.InstanceType == "":
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: instance type is empty", req.NodeID)
	case !json.Valid(req.Bootstrap):
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: bootstrap payload is not JSON", req.NodeID)
	}
	markets, err := d.spot.Markets(req)
	if err != nil {
		return cloud.Instance{}, err
	}
	userData := UserData(req.Bootstrap)
	if len(userData) > maxUserData {
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: user data is %d bytes, EC2 takes %d", req.NodeID, len(userData), maxUserData)
	}

	unlock, err := d.keys.Lock(ctx, req.IdempotencyKey)
	if err != nil {
		return cloud.Instance{}, fail(op, err, "node %s: wait for its other launch", req.NodeID)
	}
	defer unlock()

	if inst, ok, err := d.findNode(ctx, req.NodeID); err != nil {
		return cloud.Instance{}, fail(op, err, "node %s: look for its instance", req.NodeID)
	} else if ok {
		return inst, nil
	}

	tags := d.instanceTags(req)
	var capacity []string // "market in subnet: error" of each capacity failure
	for _, market := range markets {
		for _, subnet := range d.cfg.Cloud.SubnetIDs {
			inst, err := d.run(ctx, req, tags, userData, subnet, market)
			if err == nil {
				return inst, nil
			}
			kind := kindOf(err)
			if market == api.MarketSpot && len(markets) > 1 && (kind == cloud.Quota || kind == cloud.Auth) {
				// The spot quota is the region's, and a spot launch the
				// role may not make (a policy without the
				// spot-instances-request resource, or without
				// iam:CreateServiceLinkedRole while the account has no
				// Spot service-linked role yet) fails in every subnet:
				// no other subnet helps, on-demand may.
				why := "spot quota reached"
				if kind == cloud.Auth {
					why = "spot launch not authorized (the role's policy needs RunInstances on spot-instances-request/* and, until the account has the AWSServiceRoleForEC2Spot role, iam:CreateServiceLinkedRole for spot.amazonaws.com)"
				}
				d.log.Warn(why+", trying on-demand", logNodeID, req.NodeID,
					logInstanceType, req.InstanceType, logErr, errorCode(err))
				capacity = append(capacity, fmt.Sprintf("%s in %s: %s", market, subnet, errorCode(err)))
				break
			}
			if kind != cloud.Capacity {
				return cloud.Instance{}, fail(op, err, "node %s: run %s %s instance in %s", req.NodeID, market, req.InstanceType, subnet)
			}
			d.log.Info("no capacity, trying the next subnet or market", logNodeID, req.NodeID,
				logInstanceType, req.InstanceType, logSubnet, subnet, logMarket, market, logErr, errorCode(err))
			capacity = append(capacity, fmt.Sprintf("%s in %s: %s", market, subnet, errorCode(err)))
		}
		if market == api.MarketSpot {
			d.spot.Exhausted(req.InstanceType)
		}
	}
	return cloud.Instance{}, cloud.Errorf(cloud.Capacity, op, "node %s: no capacity for %s (%s)", req.NodeID, req.InstanceType, strings.Join(capacity, "; "))
}

// maxTokenAttempts bounds the client tokens of one node in one subnet and
// market (see run): each is spent by an instance that ended before it was
// recorded, which a node meets only after crashes or lost answers.
const maxTokenAttempts = 16

// mismatchSettle is how long IdempotentParameterMismatch with no instance
// of the node visible in any state is taken for DescribeInstances not
// showing a new instance yet (eventual consistency, seconds) before the
// token is taken as spent by an instance that ended long ago (terminated
// instances leave DescribeInstances after about an hour; their tokens stay).
const mismatchSettle = 5 * time.Minute

// run makes the RunInstances of one subnet and market. Its client token is
// the key's (see clientToken), so a retry after a crash or a lost answer
// gets the instance the first call started. When EC2 answers
// IdempotentParameterMismatch (the same token with other parameters: every
// Launch carries a new bootstrap token) and the node has no live
// instance, the token was spent by an instance that has ended: the next
// attempt's token launches. An instance that is only not visible yet is
// waited for instead (Transient), so it is not launched twice.
func (d *Driver) run(ctx context.Context, req cloud.LaunchRequest, tags []types.Tag, userData, subnet, market string) (cloud.Instance, error) {
	const op = "launch"
	for attempt := 0; ; attempt++ {
		in := d.runInput(req, tags, userData, subnet, market, attempt)
		out, err := d.ec2.RunInstances(ctx, in)
		if err == nil {
			d.mismatchSettled(req.IdempotencyKey, true)
			if len(out.Instances) != 1 {
				return cloud.Instance{}, cloud.Errorf(cloud.Transient, op, "node %s: RunInstances answered %d instances", req.NodeID, len(out.Instances))
			}
			inst, ok := instance(out.Instances[0])
			if !ok {
				// The instance may exist: the next pass finds it by
				// its tags, or reuses the ClientToken.
				return cloud.Instance{}, cloud.Errorf(cloud.Transient, op, "node %s: RunInstances answered no valid instance id", req.NodeID)
			}
			if inst.NodeID == "" {
				inst.NodeID = req.NodeID
			}
			d.log.Info("launched instance", logNodeID, req.NodeID, logInstanceID, inst.ID,
				logInstanceType, req.InstanceType, logSubnet, subnet, logMarket, market)
			return inst, nil
		}
		if errorCode(err) != "IdempotentParameterMismatch" {
			return cloud.Instance{}, err
		}
		live, ended, lerr := d.nodeInstances(ctx, req.NodeID)
		switch {
		case lerr != nil:
			return cloud.Instance{}, fail(op, lerr, "node %s: look for the instance of its client token", req.NodeID)
		case live != nil:
			return *live, nil
		case !d.tokenSpent(req.IdempotencyKey, awssdk.ToString(in.ClientToken), ended):
			return cloud.Instance{}, err // Transient: the next pass finds the instance
		case attempt+1 == maxTokenAttempts:
			return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: %d instances of it ended before they were recorded in %s", req.NodeID, maxTokenAttempts, subnet)
		}
		d.log.Info("the node's client token was spent by an instance that ended, launching with the next", logNodeID, req.NodeID,
			logSubnet, subnet, logMarket, market, "attempt", attempt+1)
	}
}

// tokenSpent tells whether token's instance has ended, from the node's
// ended instances: one started with token, or any when the backend does
// not say their tokens; with none visible, when mismatches with nothing
// visible have lasted mismatchSettle.
func (d *Driver) tokenSpent(key, token string, ended []types.Instance) bool {
	for _, i := range ended {
		if t := awssdk.ToString(i.ClientToken); t == "" || t == token {
			return true
		}
	}
	if len(ended) > 0 {
		return false // the token's own instance may not be visible yet
	}
	return d.mismatchSettled(key, false)
}

// mismatchSettled records a mismatch with nothing visible for key and
// tells whether the first was mismatchSettle ago; clear forgets key.
func (d *Driver) mismatchSettled(key string, clear bool) bool {
	d.mismatchMu.Lock()
	defer d.mismatchMu.Unlock()
	if clear {
		delete(d.mismatchSince, key)
		return false
	}
	first, ok := d.mismatchSince[key]
	if !ok {
		d.mismatchSince[key] = d.cfg.Now()
		return false
	}
	return d.cfg.Now().Sub(first) >= mismatchSettle
}

// instanceTags answers the tags of req's instance and volumes: req.Tags
// with the node, the managed-by marker (the permissions policy lets the
// role launch and terminate only instances carrying it), the cloud and the
// organization always set.
func (d *Driver) instanceTags(req cloud.LaunchRequest) []types.Tag {
	m := cloud.NodeTags(req, d.cfg.CloudID, d.cfg.OrgID)
	tags := make([]types.Tag, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		tags = append(tags, types.Tag{Key: awssdk.String(k), Value: awssdk.String(m[k])})
	}
	return tags
}

// runInput is the RunInstances request of one attempt: in subnet, in
// market, with the client token of attempt.
func (d *Driver) runInput(req cloud.LaunchRequest, tags []types.Tag, userData, subnet, market string, attempt int) *ec2.RunInstancesInput {
	c := d.cfg.Cloud
	in := &ec2.RunInstancesInput{
		ImageId:      awssdk.String(c.ImageID),
		InstanceType: types.InstanceType(req.InstanceType),
		MinCount:     awssdk.Int32(1),
		MaxCount:     awssdk.Int32(1),
		ClientToken:  awssdk.String(clientToken(req.IdempotencyKey, subnet, market, attempt)),
		SubnetId:     awssdk.String(subnet),
		UserData:     awssdk.String(base64.StdEncoding.EncodeToString([]byte(userData))),
		TagSpecifications: []types.TagSpecification{
			{ResourceType: types.ResourceTypeInstance, Tags: tags},
			{ResourceType: types.ResourceTypeVolume, Tags: tags},
		},
		// IMDSv2 only: a process on the node tricked into a GET (SSRF)
		// cannot read the instance profile's credentials.
		MetadataOptions: &types.InstanceMetadataOptionsRequest{
			HttpTokens:   types.HttpTokensStateRequired,
			HttpEndpoint: types.InstanceMetadataEndpointStateEnabled,
		},
		// Nodes are terminated, never stopped: the user data powers the
		// instance off when its agent exits and on any later boot, which
		// ends the instance and its bill.
		InstanceInitiatedShutdownBehavior: types.ShutdownBehaviorTerminate,
	}
	if len(c.SecurityGroupIDs) > 0 {
		in.SecurityGroupIds = slices.Clone(c.SecurityGroupIDs)
	}
	if c.InstanceProfileARN != "" {
		in.IamInstanceProfile = &types.IamInstanceProfileSpecification{Arn: awssdk.String(c.InstanceProfileARN)}
	}
	if market == api.MarketSpot {
		in.InstanceMarketOptions = &types.InstanceMarketOptionsRequest{
			MarketType: types.MarketTypeSpot,
			SpotOptions: &types.SpotMarketOptions{
				SpotInstanceType:             types.SpotInstanceTypeOneTime,
				InstanceInterruptionBehavior: types.InstanceInterruptionBehaviorTerminate,
			},
		}
	}
	return in
}

// clientToken is RunInstances' idempotency token of one attempt: the same
// for the same key, subnet id and market, so a Launch retried after a
// crash gets the instance the first one started (AWS keeps tokens for
// days), and different for another subnet or market, whose parameters
// differ (the same token with other parameters is
// IdempotentParameterMismatch). The subnet is named by its id, not its
// place in the cloud's list, so reordering the list never gives one
// subnet's token to another. attempt > 0 is a new token after the
// instance of the previous one ended (see run). EC2 takes 64 ASCII
// characters; the key is hashed to fit whatever it is.
func clientToken(key, subnet, market string, attempt int) string {
	m := "od"
	if market == api.MarketSpot {
		m = "sp"
	}
	sum := sha256.Sum256([]byte(key + "\x00" + subnet + "\x00" + m))
	token := "rp-" + hex.EncodeToString(sum[:20])
	if attempt > 0 {
		token += fmt.Sprintf("-%d", attempt)
	}
	return token
}

// nodeInstances answers the instances of this cloud tagged with nodeID in
// every state: a live one, if there is one, and those that ended (shutting
// down, terminated, stopping, stopped). Like List, it keeps only instances
// with a valid id that carry the tags it asked for.
func (d *Driver) nodeInstances(ctx context.Context, nodeID string) (live *cloud.Instance, ended []types.Instance, err error) {
	want := map[string]string{cloud.TagNode: nodeID, cloud.TagManagedBy: cloud.ManagedByValue}
	if d.cfg.CloudID != "" {
		want[cloud.TagCloud] = d.cfg.CloudID
	}
	var filters []types.Filter
	for _, k := range slices.Sorted(maps.Keys(want)) {
		filters = append(filters, types.Filter{Name: awssdk.String("tag:" + k), Values: []string{want[k]}})
	}
	pages := ec2.NewDescribeInstancesPaginator(d.ec2, &ec2.DescribeInstancesInput{Filters: filters})
	for n := 0; pages.HasMorePages(); n++ {
		if n == maxListPages {
			return nil, nil, cloud.Errorf(cloud.Transient, "launch", "DescribeInstances answered more than %d pages", maxListPages)
		}
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				if inst, ok := liveInstance(i, want); ok {
					return &inst, nil, nil
				}
				inst, ok := instance(i)
				if !ok || i.State == nil || len(ended) >= maxListInstances {
					continue
				}
				mine := true
				for k, v := range want {
					mine = mine && inst.Tags[k] == v
				}
				if mine {
					ended = append(ended, i)
				}
			}
		}
	}
	return nil, ended, nil
}

// findNode answers the live instance of this cloud tagged with nodeID, if
// there is one.
func (d *Driver) findNode(ctx context.Context, nodeID string) (cloud.Instance, bool, error) {
	tags := map[string]string{cloud.TagNode: nodeID}
	if d.cfg.CloudID != "" {
		tags[cloud.TagCloud] = d.cfg.CloudID
	}
	found, err := d.list(ctx, tags)
	if err != nil || len(found) == 0 {
		return cloud.Instance{}, false, err
	}
	// Two live instances of one node would be a bug elsewhere (another
	// control plane on the same cloud); either is the node's, and the
	// reconciler terminates the other as an orphan.
	return found[0], true, nil
}
