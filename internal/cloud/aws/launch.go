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
// (or the account's spot quota is reached).
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
	markets, err := d.markets(req)
	if err != nil {
		return cloud.Instance{}, err
	}
	userData := UserData(req.Bootstrap)
	if len(userData) > maxUserData {
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: user data is %d bytes, EC2 takes %d", req.NodeID, len(userData), maxUserData)
	}

	unlock, err := d.keys.lock(ctx, req.IdempotencyKey)
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
		for i, subnet := range d.cfg.Cloud.SubnetIDs {
			in := d.runInput(req, tags, userData, i, subnet, market)
			out, err := d.ec2.RunInstances(ctx, in)
			if err == nil && len(out.Instances) == 1 {
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
			if err == nil {
				return cloud.Instance{}, cloud.Errorf(cloud.Transient, op, "node %s: RunInstances answered %d instances", req.NodeID, len(out.Instances))
			}
			kind := kindOf(err)
			if kind == cloud.Quota && market == api.MarketSpot && len(markets) > 1 {
				// The spot quota is the region's: no other subnet helps,
				// on-demand may.
				d.log.Info("spot quota reached, trying on-demand", logNodeID, req.NodeID,
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
			d.spotExhausted(req.InstanceType)
		}
	}
	return cloud.Instance{}, cloud.Errorf(cloud.Capacity, op, "node %s: no capacity for %s (%s)", req.NodeID, req.InstanceType, strings.Join(capacity, "; "))
}

// markets answers the markets to try for req, in order: spot and
// on-demand are themselves; prefer_spot is spot then on-demand, or only
// on-demand while spot of that type was recently out of capacity.
func (d *Driver) markets(req cloud.LaunchRequest) ([]string, error) {
	switch req.Market {
	case api.MarketOnDemand, "":
		return []string{api.MarketOnDemand}, nil
	case api.MarketSpot:
		return []string{api.MarketSpot}, nil
	case api.MarketPreferSpot:
		if d.spotRecentlyExhausted(req.InstanceType) {
			return []string{api.MarketOnDemand}, nil
		}
		return []string{api.MarketSpot, api.MarketOnDemand}, nil
	}
	return nil, cloud.Errorf(cloud.Invalid, "launch", "node %s: unknown market %q", req.NodeID, req.Market)
}

// spotExhausted records that spot had no capacity for instanceType in any
// subnet.
func (d *Driver) spotExhausted(instanceType string) {
	d.spotMu.Lock()
	defer d.spotMu.Unlock()
	d.spotDown[instanceType] = d.cfg.Now()
}

func (d *Driver) spotRecentlyExhausted(instanceType string) bool {
	d.spotMu.Lock()
	defer d.spotMu.Unlock()
	at, ok := d.spotDown[instanceType]
	if !ok {
		return false
	}
	if d.cfg.Now().Sub(at) < d.cfg.SpotRetryAfter {
		return true
	}
	delete(d.spotDown, instanceType)
	return false
}

// instanceTags answers the tags of req's instance and volumes: req.Tags
// with the node, the managed-by marker (the permissions policy lets the
// role launch and terminate only instances carrying it), the cloud and the
// organization always set.
func (d *Driver) instanceTags(req cloud.LaunchRequest) []types.Tag {
	m := maps.Clone(req.Tags)
	if m == nil {
		m = map[string]string{}
	}
	m[cloud.TagManagedBy] = cloud.ManagedByValue
	m[cloud.TagNode] = req.NodeID
	if d.cfg.CloudID != "" {
		m[cloud.TagCloud] = d.cfg.CloudID
	}
	if d.cfg.OrgID != "" {
		m[TagOrganization] = d.cfg.OrgID
	}
	tags := make([]types.Tag, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		tags = append(tags, types.Tag{Key: awssdk.String(k), Value: awssdk.String(m[k])})
	}
	return tags
}

// runInput is the RunInstances request of one attempt: subnet number i of
// the cloud's list, in market.
func (d *Driver) runInput(req cloud.LaunchRequest, tags []types.Tag, userData string, i int, subnet, market string) *ec2.RunInstancesInput {
	c := d.cfg.Cloud
	in := &ec2.RunInstancesInput{
		ImageId:      awssdk.String(c.ImageID),
		InstanceType: types.InstanceType(req.InstanceType),
		MinCount:     awssdk.Int32(1),
		MaxCount:     awssdk.Int32(1),
		ClientToken:  awssdk.String(clientToken(req.IdempotencyKey, i, market)),
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
		// Nodes are terminated, never stopped: a shutdown from inside
		// (the agent giving up) ends the instance and its bill.
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
// for the same key, subnet and market, so a Launch retried after a crash
// gets the instance the first one started (AWS keeps tokens for days), and
// different for another subnet or market, whose parameters differ (the same
// token with other parameters is IdempotentParameterMismatch). EC2 takes 64
// ASCII characters; the key is hashed to fit whatever it is.
func clientToken(key string, subnet int, market string) string {
	sum := sha256.Sum256([]byte(key))
	m := "od"
	if market == api.MarketSpot {
		m = "sp"
	}
	return fmt.Sprintf("rp-%s-%d-%s", hex.EncodeToString(sum[:20]), subnet, m)
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
