package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/dump"
	"github.com/rayplane/rayplane/service/planner"
)

// Fill writes, through the store's interfaces, rows into every table with
// every nullable column both set and unset somewhere: two organizations,
// tokens (one revoked, one expiring, one used), clouds (one with a sealed
// secret), a compute config with two versions, clusters, nodes at each
// step of their credentials, events, an idempotency key and audit events.
// It fails t if a table stays empty.
func Fill(t testing.TB, st Store) {
	t.Helper()
	ctx := context.Background()
	t0 := time.Date(2025, 6, 1, 8, 0, 0, 123456789, time.UTC)
	later := func(d time.Duration) time.Time { return t0.Add(d) }
	expires := later(48 * time.Hour)
	update := func(fn func(service.Tx) error) {
		t.Helper()
		if err := st.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	orgA, orgB := service.NewID(service.PrefixOrg, t0), service.NewID(service.PrefixOrg, later(time.Millisecond))
	update(func(tx service.Tx) error {
		if err := tx.System().CreateOrg(ctx, api.Organization{ID: orgA, Name: "fill-system", System: true, CreatedAt: t0}); err != nil {
			return err
		}
		return tx.System().CreateOrg(ctx, api.Organization{ID: orgB, Name: "fill-team", CreatedAt: t0})
	})
	for i, tok := range []service.Token{
		{APIToken: api.APIToken{Name: "admin", Role: api.RoleAdmin, CreatedAt: t0}},
		{APIToken: api.APIToken{Name: "ci", Role: api.RoleWriter, CreatedAt: t0, ExpiresAt: &expires, CreatedBy: "tok_x"}},
		{APIToken: api.APIToken{Name: "old", Role: api.RoleReader, CreatedAt: t0}},
	} {
		tok.ID = service.NewID(service.PrefixToken, later(time.Duration(i)*time.Millisecond))
		tok.Prefix = "fillprefix" + string(rune('a'+i))
		tok.Hash = service.HashToken("secret of " + tok.Name)
		update(func(tx service.Tx) error {
			if err := tx.Org(orgB).CreateToken(ctx, tok); err != nil {
				return err
			}
			switch tok.Name {
			case "old":
				return tx.Org(orgB).RevokeToken(ctx, tok.ID, later(time.Hour))
			case "admin":
				return tx.System().TouchTokens(ctx, map[string]time.Time{tok.ID: later(time.Minute)})
			}
			return nil
		})
	}
	k8s := k8sCloud("fill-k8s", "fill-token-"+t.Name())
	maxNodes := 10
	local := service.NewCloud(api.CloudSpec{Name: "fill-local", Provider: api.ProviderLocal, Quotas: api.Quotas{MaxNodes: &maxNodes}}, t0)
	update(func(tx service.Tx) error {
		if err := tx.Org(orgB).CreateCloud(ctx, k8s); err != nil {
			return err
		}
		if err := tx.Org(orgB).CreateCloud(ctx, local); err != nil {
			return err
		}
		_, err := tx.DataPlane().SetCloudVerification(ctx, local.ID, local.UpdatedAt, api.CloudActive, "verified", later(time.Minute))
		return err
	})
	cc := api.ComputeConfig{ID: service.NewID(service.PrefixComputeConfig, t0), Name: "fill", Version: 1,
		ComputeConfigSpec: api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: "local.small"}},
		CreatedAt:         t0, UpdatedAt: t0, VersionCreatedAt: t0}
	update(func(tx service.Tx) error {
		if err := tx.Org(orgB).CreateComputeConfig(ctx, cc); err != nil {
			return err
		}
		v2 := cc
		v2.Version, v2.Name, v2.UpdatedAt, v2.VersionCreatedAt = 2, "fill-2", later(time.Hour), later(time.Hour)
		v2.ComputeConfigSpec.HeadNode.InstanceType = "local.medium"
		return tx.Org(orgB).AddComputeConfigVersion(ctx, v2)
	})
	running := service.NewCluster(api.ClusterRequest{Name: "fill-running", CloudID: local.ID, ComputeConfigID: cc.ID}, 2, t0)
	running.Status = api.ClusterRunning
	stopped := service.NewCluster(api.ClusterRequest{Name: "fill-stopped", CloudID: local.ID, ComputeConfigID: cc.ID}, 1, t0)
	update(func(tx service.Tx) error {
		if err := tx.Org(orgB).CreateCluster(ctx, running); err != nil {
			return err
		}
		if err := tx.Org(orgB).CreateCluster(ctx, stopped); err != nil {
			return err
		}
		if err := tx.Org(orgB).RequestClusterDelete(ctx, stopped.ID, later(time.Minute)); err != nil {
			return err
		}
		if _, err := tx.DataPlane().SetClusterStatus(ctx, running.ID, running.Generation, api.ClusterRunning, "up",
			[]api.Condition{{Type: api.ConditionReady, Status: api.ConditionTrue, Reason: "Running", LastTransitionTime: later(time.Minute)}}, later(time.Minute)); err != nil {
			return err
		}
		if err := tx.DataPlane().SetClusterHeadAddress(ctx, running.ID, "10.0.0.1", later(time.Minute)); err != nil {
			return err
		}
		if err := tx.DataPlane().AddClusterEvent(ctx, running.ID, api.ClusterEvent{ID: service.NewID(service.PrefixClusterEvent, t0), Time: t0,
			Kind: "provisioning", Message: "head requested"}); err != nil {
			return err
		}
		return tx.Org(orgB).PutIdempotencyKey(ctx, service.IdempotencyRecord{Key: "fill-key", RequestHash: "h", ObjectID: running.ID, CreatedAt: t0})
	})
	node := func(i int, head bool) service.NodeRecord {
		return service.NodeRecord{Node: planner.Node{Node: api.Node{ID: service.NewID(service.PrefixNode, later(time.Duration(i)*time.Millisecond)),
			ClusterID: running.ID, Group: "workers", Head: head, InstanceType: "local.small", Market: "on_demand", Status: api.NodeRequested,
			StatusChangedAt: t0, CreatedAt: t0, UpdatedAt: t0, Resources: api.Resources{"CPU": 2}}, VCPUs: 2, PricePerHour: 0.125}}
	}
	head, worker, fresh := node(0, true), node(1, false), node(2, false)
	head.Group = "head"
	update(func(tx service.Tx) error {
		dp := tx.DataPlane()
		for _, n := range []service.NodeRecord{head, worker, fresh} {
			if err := dp.CreateNode(ctx, n); err != nil {
				return err
			}
		}
		for _, n := range []service.NodeRecord{head, worker} {
			if _, err := dp.StartLaunch(ctx, n.ID, "boot-"+n.ID, service.HashToken("boot "+n.ID), expires, later(time.Second)); err != nil {
				return err
			}
			if err := dp.SetNodeInstance(ctx, n.ID, "i-"+n.ID, "10.0.0.2", later(2*time.Second)); err != nil {
				return err
			}
			if _, err := dp.RegisterNode(ctx, n.ID, "cred-"+n.ID, service.HashToken("cred "+n.ID), expires, later(3*time.Second)); err != nil {
				return err
			}
		}
		if _, err := dp.RenewNodeCredential(ctx, head.ID, "cred-"+head.ID, "cred2-"+head.ID, service.HashToken("cred2 "+head.ID), expires, later(time.Minute)); err != nil {
			return err
		}
		if err := dp.SetNodeAccessURL(ctx, head.ID, "https://10.0.0.2:8443", later(time.Minute)); err != nil {
			return err
		}
		if err := dp.SetNodeAccessPublicKeySHA256(ctx, head.ID, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", later(time.Minute)); err != nil {
			return err
		}
		idle := later(time.Minute)
		if err := dp.RecordHeartbeats(ctx, []service.Heartbeat{
			{NodeID: head.ID, At: later(2 * time.Minute), Usage: api.Resources{"CPU": 1.5}, RuntimeState: "running", RuntimeHash: "abc",
				Demand: []api.ResourceDemand{{Shape: api.Resources{"CPU": 1}, Count: 2, Strategy: api.StrategyPack}}},
			{NodeID: worker.ID, At: later(2 * time.Minute), IdleSince: &idle, RuntimeState: "running", RuntimeMessage: "ok", Drained: true, RuntimeCrashes: 1},
		}); err != nil {
			return err
		}
		if _, err := dp.DrainNode(ctx, worker.ID, later(time.Hour), "idle", later(3*time.Minute)); err != nil {
			return err
		}
		for i, e := range []api.AuditEvent{
			{OrgID: orgB, ActorID: "tok_x", Action: "cluster.create", TargetType: "cluster", TargetID: running.ID, Result: "ok", RemoteAddr: "127.0.0.1:1"},
			{Action: "auth.failed", Result: "unauthorized", Reason: "unknown token", RemoteAddr: "127.0.0.1:2"},
		} {
			e.ID, e.Time = service.NewID(service.PrefixAuditEvent, later(time.Duration(i)*time.Millisecond)), later(time.Duration(i)*time.Second)
			if err := tx.System().AddAuditEvent(ctx, e); err != nil {
				return err
			}
		}
		return nil
	})
	for _, tab := range dump.Tables {
		if len(Rows(t, st, tab.Name)) == 0 {
			t.Fatalf("Fill left table %s empty", tab.Name)
		}
	}
}
