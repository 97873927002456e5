// Package storetest is the conformance suite every service.Store engine
// runs (service/sqlite, service/postgres): one set of tests, so a behaviour
// cannot differ between engines. It reads rows as they are stored through
// the engines' own export (service/dump's canonical values), not through
// the store's reads, so a write that touches a column or a row it should
// not shows up whatever the engine. Tests of what only one engine has
// (SQLite's files and pragmas, PostgreSQL's connection handling) stay in
// the engine's package.
package storetest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/dump"
)

// Store is what an engine hands the suite: the store, and its tables in
// the engine-neutral form.
type Store interface {
	service.Store
	dump.Exporter
	dump.Importer
}

// Open opens a store on a new, empty database with keys for cloud secrets
// (none: a store opened without keys), closed when the test ends.
type Open func(t *testing.T, keys *secretbox.Keyring) Store

// Run runs the whole suite against the engine open opens.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(*testing.T, Open)
	}{
		{"OrgScopingAndConflicts", testOrgScopingAndConflicts},
		{"ConflictLeavesTransactionUsable", testConflictLeavesTransactionUsable},
		{"RollbackLeavesNothing", testRollbackLeavesNothing},
		{"PanicRollsBack", testPanicRollsBack},
		{"Pagination", testPagination},
		{"ProviderBlocksRoundTrip", testProviderBlocksRoundTrip},
		{"SecretsSealedInRows", testSecretsSealedInRows},
		{"NoKeysNoSecrets", testNoKeysNoSecrets},
		{"ExportImportRoundTrip", testExportImportRoundTrip},
		{"HeadAccessURL", testHeadAccessURL},
		{"TransitionNode", testTransitionNode},
		{"TransitionNodeEmptyFrom", testTransitionNodeEmptyFrom},
		{"StartLaunch", testStartLaunch},
		{"SetNodeInstance", testSetNodeInstance},
		{"RegisterNode", testRegisterNode},
		{"RenewNodeCredential", testRenewNodeCredential},
		{"DrainNode", testDrainNode},
		{"StopCluster", testStopCluster},
		{"RecordHeartbeats", testRecordHeartbeats},
		{"HeartbeatDemand", testHeartbeatDemand},
		{"UnknownIDs", testUnknownIDs},
		{"SetClusterStatus", testSetClusterStatus},
	}
	// Every test has a store of its own, so they run side by side (on
	// PostgreSQL most of a test's time is making and dropping its database).
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open)
		})
	}
}

// MustKeys is a fresh keyring.
func MustKeys(t testing.TB) *secretbox.Keyring {
	t.Helper()
	kr, err := secretbox.Generate(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func openWithKeys(t *testing.T, open Open) Store {
	t.Helper()
	return open(t, MustKeys(t))
}

// NewOrg creates an organization named name.
func NewOrg(t testing.TB, st service.Store, name string) string {
	t.Helper()
	ctx := context.Background()
	id := service.NewID(service.PrefixOrg, time.Now())
	if err := st.Update(ctx, func(tx service.Tx) error {
		return tx.System().CreateOrg(ctx, api.Organization{ID: id, Name: name, CreatedAt: time.Now()})
	}); err != nil {
		t.Fatal(err)
	}
	return id
}

// Rows answers every row of table as stored: key column values joined by
// "/" → column → canonical value.
func Rows(t testing.TB, st dump.Exporter, table string) map[string]map[string]any {
	t.Helper()
	tab, ok := dump.TableNamed(table)
	if !ok {
		t.Fatalf("no table %s", table)
	}
	out := map[string]map[string]any{}
	err := st.Export(context.Background(), []dump.Table{tab}, func(tab dump.Table, r dump.Row) error {
		row := map[string]any{}
		for i, c := range tab.Columns {
			row[c.Name] = r[i]
		}
		out[rowKey(tab, row)] = row
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func rowKey(tab dump.Table, row map[string]any) string {
	key := ""
	for i, k := range tab.Key {
		if i > 0 {
			key += "/"
		}
		key += toString(row[k])
	}
	return key
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return ""
}
