package storetest

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/dump"
)

// testHeartbeatDemand: a head's reported demand is stored with its beat
// and read back by every read of the node; a later beat without demand
// clears it (NULL), an older beat changes none of it, and a column that
// does not parse (written by hand: here, through an import) is an error
// that names the node, never a panic nor a silent empty demand: a
// control plane planning from it would scale the cluster down.
func testHeartbeatDemand(t *testing.T, open Open) {
	d := newDataPlane(t, open)
	ctx := context.Background()
	id := d.newNode(t, api.NodeRunning, registered)
	demand := []api.ResourceDemand{{Shape: api.Resources{"CPU": 4, "GPU": 1}, Count: 3},
		{Shape: api.Resources{"CPU": 1}, Count: 2, Strategy: api.StrategyStrictSpread}}
	beat := func(hour int, dm []api.ResourceDemand) {
		t.Helper()
		d.update(t, func(tx service.Tx) error {
			return tx.DataPlane().RecordHeartbeats(ctx, []service.Heartbeat{{NodeID: id, At: t0.Add(time.Duration(hour) * time.Hour),
				RuntimeState: "running", Demand: dm}})
		})
	}
	check := func(step string, want []api.ResourceDemand) {
		t.Helper()
		stored := d.onDisk(t, "nodes")[id]["demand"]
		if want == nil && stored != nil {
			t.Errorf("%s: stored demand %v, want NULL", step, stored)
		}
		if want != nil && stored != mustJSON(want) {
			t.Errorf("%s: stored demand %v, want %s", step, stored, mustJSON(want))
		}
		reads := map[string]service.NodeRecord{
			"ListClusterNodes": d.node(t, id),
			"GetNodeByCredentialPrefix": d.nodeBy(t, func(dp service.DataPlaneTx) (service.NodeRecord, error) {
				return dp.GetNodeByCredentialPrefix(ctx, credPrefix(id))
			}),
		}
		var cloudNodes []service.NodeRecord
		if err := d.st.View(ctx, func(tx service.Tx) (err error) {
			cloudNodes, err = tx.DataPlane().ListCloudNodes(ctx, d.cloud)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		for _, n := range cloudNodes {
			if n.ID == id {
				reads["ListCloudNodes"] = n
			}
		}
		for name, n := range reads {
			if !reflect.DeepEqual(n.Demand, want) {
				t.Errorf("%s: %s reads demand %+v, want %+v", step, name, n.Demand, want)
			}
		}
	}
	check("before any beat", nil)
	beat(2, demand)
	check("a beat with demand", demand)
	beat(1, nil)
	check("an older beat without demand", demand)
	beat(3, []api.ResourceDemand{})
	check("a later beat with an empty demand", nil)
	beat(4, demand[:1])
	check("a later beat with demand", demand[:1])
	beat(5, nil)
	check("a later beat without demand", nil)

	t.Run("garbage in the column", func(t *testing.T) {
		beat(6, demand)
		// The row goes, as exported, into a fresh store with its demand
		// replaced by text that is not a demand list.
		rows := ExportAll(t, d.st, func(tab dump.Table, r dump.Row) {
			if tab.Name == "nodes" {
				for i, c := range tab.Columns {
					if c.Name == "demand" && r[0] == id {
						r[i] = `{"not": "a list"`
					}
				}
			}
		})
		dst := openWithKeys(t, open)
		if _, err := dst.Import(ctx, rows.Feed(len(rows))); err != nil {
			t.Fatal(err)
		}
		for name, read := range map[string]func(service.DataPlaneTx) error{
			"ListClusterNodes": func(dp service.DataPlaneTx) error { _, err := dp.ListClusterNodes(ctx, d.cluster, true); return err },
			"GetNodeByCredentialPrefix": func(dp service.DataPlaneTx) error {
				_, err := dp.GetNodeByCredentialPrefix(ctx, credPrefix(id))
				return err
			},
		} {
			err := dst.View(ctx, func(tx service.Tx) error { return read(tx.DataPlane()) })
			if err == nil || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), "demand") {
				t.Errorf("%s of a node whose demand does not parse: %v, want an error naming node %s and its demand", name, err, id)
			}
		}
	})
}
