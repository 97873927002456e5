package sqlite

import "github.com/rayplane/rayplane/service"

// tx implements service.Tx: the system and data-plane views are tx itself;
// an organization's view is service.ScopeOrg's, which puts its org id into
// every call of tx's Org… methods, and those into every query.

var (
	_ service.Tx          = (*tx)(nil)
	_ service.SystemTx    = (*tx)(nil)
	_ service.DataPlaneTx = (*tx)(nil)
	_ service.OrgScoped   = (*tx)(nil)
)

func (t *tx) Org(orgID string) service.OrgTx { return service.ScopeOrg(t, orgID) }
func (t *tx) System() service.SystemTx       { return t }
func (t *tx) DataPlane() service.DataPlaneTx { return t }
