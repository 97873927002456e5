package postgres

import (
	"context"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

// tx implements service.Tx: the system and data-plane views are tx itself;
// an organization's view is orgTx, which puts its org id into every query.

var (
	_ service.Tx          = (*tx)(nil)
	_ service.SystemTx    = (*tx)(nil)
	_ service.DataPlaneTx = (*tx)(nil)
	_ service.OrgTx       = orgTx{}
)

func (t *tx) Org(orgID string) service.OrgTx { return orgTx{t: t, org: orgID} }
func (t *tx) System() service.SystemTx       { return t }
func (t *tx) DataPlane() service.DataPlaneTx { return t }

// orgTx is one organization's view of a transaction.
type orgTx struct {
	t   *tx
	org string
}

func (o orgTx) CreateToken(ctx context.Context, tok service.Token) error {
	tok.OrgID = o.org
	return o.t.createToken(ctx, tok)
}
func (o orgTx) GetToken(ctx context.Context, id string) (service.Token, error) {
	return o.t.getToken(ctx, o.org, id)
}
func (o orgTx) ListTokens(ctx context.Context, opts api.ListOptions) (api.Page[service.Token], error) {
	return o.t.listTokens(ctx, o.org, opts)
}
func (o orgTx) RevokeToken(ctx context.Context, id string, at time.Time) error {
	return o.t.revokeToken(ctx, o.org, id, at)
}

func (o orgTx) CreateCloud(ctx context.Context, c api.Cloud) error {
	return o.t.createCloud(ctx, o.org, c)
}
func (o orgTx) GetCloud(ctx context.Context, id string) (api.Cloud, error) {
	return o.t.getCloud(ctx, o.org, id)
}
func (o orgTx) ListClouds(ctx context.Context, f service.NameFilter, opts api.ListOptions) (api.Page[api.Cloud], error) {
	return o.t.listClouds(ctx, o.org, f, opts)
}
func (o orgTx) UpdateCloud(ctx context.Context, c api.Cloud) error {
	return o.t.updateCloud(ctx, o.org, c)
}
func (o orgTx) DeleteCloud(ctx context.Context, id string) error {
	return o.t.deleteCloud(ctx, o.org, id)
}
func (o orgTx) GetCloudSecret(ctx context.Context, id string) (string, error) {
	return o.t.getCloudSecret(ctx, o.org, id)
}

func (o orgTx) CreateComputeConfig(ctx context.Context, cc api.ComputeConfig) error {
	return o.t.createComputeConfig(ctx, o.org, cc)
}
func (o orgTx) GetComputeConfig(ctx context.Context, id string, v int) (api.ComputeConfig, error) {
	return o.t.getComputeConfig(ctx, o.org, id, v)
}
func (o orgTx) ListComputeConfigs(ctx context.Context, f service.NameFilter, opts api.ListOptions) (api.Page[api.ComputeConfig], error) {
	return o.t.listComputeConfigs(ctx, o.org, f, opts)
}
func (o orgTx) ListComputeConfigVersions(ctx context.Context, id string, opts api.ListOptions) (api.Page[api.ComputeConfig], error) {
	return o.t.listComputeConfigVersions(ctx, o.org, id, opts)
}
func (o orgTx) AddComputeConfigVersion(ctx context.Context, cc api.ComputeConfig) error {
	return o.t.addComputeConfigVersion(ctx, o.org, cc)
}
func (o orgTx) RenameComputeConfig(ctx context.Context, id, name string, at time.Time) error {
	return o.t.renameComputeConfig(ctx, o.org, id, name, at)
}
func (o orgTx) DeleteComputeConfig(ctx context.Context, id string) error {
	return o.t.deleteComputeConfig(ctx, o.org, id)
}

func (o orgTx) CreateCluster(ctx context.Context, c api.Cluster) error {
	return o.t.createCluster(ctx, o.org, c)
}
func (o orgTx) GetCluster(ctx context.Context, id string) (api.Cluster, error) {
	return o.t.getCluster(ctx, o.org, id)
}
func (o orgTx) ListClusters(ctx context.Context, f service.ClusterFilter, opts api.ListOptions) (api.Page[api.Cluster], error) {
	return o.t.listClusters(ctx, o.org, f, opts)
}
func (o orgTx) UpdateCluster(ctx context.Context, c api.Cluster) error {
	return o.t.updateCluster(ctx, o.org, c)
}
func (o orgTx) DeleteCluster(ctx context.Context, id string) error {
	return o.t.deleteCluster(ctx, o.org, id)
}
func (o orgTx) RequestClusterDelete(ctx context.Context, id string, at time.Time) error {
	return o.t.requestClusterDelete(ctx, o.org, id, at)
}
func (o orgTx) GetIdempotencyKey(ctx context.Context, key string) (service.IdempotencyRecord, error) {
	return o.t.getIdempotencyKey(ctx, o.org, key)
}
func (o orgTx) PutIdempotencyKey(ctx context.Context, rec service.IdempotencyRecord) error {
	return o.t.putIdempotencyKey(ctx, o.org, rec)
}
func (o orgTx) ListNodes(ctx context.Context, clusterID string, opts api.ListOptions) (api.Page[api.Node], error) {
	return o.t.listNodes(ctx, o.org, clusterID, opts)
}
func (o orgTx) ListClusterEvents(ctx context.Context, clusterID string, opts api.ListOptions) (api.Page[api.ClusterEvent], error) {
	return o.t.listClusterEvents(ctx, o.org, clusterID, opts)
}

// ListAuditEvents answers the org's events; the org id "" holds the
// failures of callers no token identified.
func (o orgTx) ListAuditEvents(ctx context.Context, unidentified bool, f api.AuditFilter, opts api.ListOptions) (api.Page[api.AuditEvent], error) {
	orgs := []string{o.org}
	if unidentified {
		orgs = append(orgs, "")
	}
	return o.t.listAuditEvents(ctx, orgs, f, opts)
}
