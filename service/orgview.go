package service

import (
	"context"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// OrgScoped is what an engine's transaction implements of OrgTx, with the
// organization passed to every call (OrgCreateToken: in the token). ScopeOrg
// makes it the OrgTx of one organization, so the binding of a view to its
// organization is written once for every engine.
type OrgScoped interface {
	OrgCreateToken(ctx context.Context, tok Token) error
	OrgGetToken(ctx context.Context, orgID, id string) (Token, error)
	OrgListTokens(ctx context.Context, orgID string, opts api.ListOptions) (api.Page[Token], error)
	OrgRevokeToken(ctx context.Context, orgID, id string, at time.Time) error
	OrgCreateCloud(ctx context.Context, orgID string, c api.Cloud) error
	OrgGetCloud(ctx context.Context, orgID, id string) (api.Cloud, error)
	OrgListClouds(ctx context.Context, orgID string, f NameFilter, opts api.ListOptions) (api.Page[api.Cloud], error)
	OrgUpdateCloud(ctx context.Context, orgID string, c api.Cloud) error
	OrgDeleteCloud(ctx context.Context, orgID, id string) error
	OrgGetCloudSecret(ctx context.Context, orgID, id string) (string, error)
	OrgCreateComputeConfig(ctx context.Context, orgID string, cc api.ComputeConfig) error
	OrgGetComputeConfig(ctx context.Context, orgID, id string, v int) (api.ComputeConfig, error)
	OrgListComputeConfigs(ctx context.Context, orgID string, f NameFilter, opts api.ListOptions) (api.Page[api.ComputeConfig], error)
	OrgListComputeConfigVersions(ctx context.Context, orgID, id string, opts api.ListOptions) (api.Page[api.ComputeConfig], error)
	OrgAddComputeConfigVersion(ctx context.Context, orgID string, cc api.ComputeConfig) error
	OrgRenameComputeConfig(ctx context.Context, orgID, id, name string, at time.Time) error
	OrgDeleteComputeConfig(ctx context.Context, orgID, id string) error
	OrgCreateCluster(ctx context.Context, orgID string, c api.Cluster) error
	OrgGetCluster(ctx context.Context, orgID, id string) (api.Cluster, error)
	OrgListClusters(ctx context.Context, orgID string, f ClusterFilter, opts api.ListOptions) (api.Page[api.Cluster], error)
	OrgUpdateCluster(ctx context.Context, orgID string, c api.Cluster) error
	OrgDeleteCluster(ctx context.Context, orgID, id string) error
	OrgRequestClusterDelete(ctx context.Context, orgID, id string, at time.Time) error
	OrgGetIdempotencyKey(ctx context.Context, orgID, key string) (IdempotencyRecord, error)
	OrgPutIdempotencyKey(ctx context.Context, orgID string, rec IdempotencyRecord) error
	OrgListNodes(ctx context.Context, orgID, clusterID string, opts api.ListOptions) (api.Page[api.Node], error)
	OrgListClusterEvents(ctx context.Context, orgID, clusterID string, opts api.ListOptions) (api.Page[api.ClusterEvent], error)
	OrgListAuditEvents(ctx context.Context, orgIDs []string, f api.AuditFilter, opts api.ListOptions) (api.Page[api.AuditEvent], error)
}

// ScopeOrg answers the view of t that reaches the objects of org only.
func ScopeOrg(t OrgScoped, org string) OrgTx { return orgView{t: t, org: org} }

// orgView puts its organization into every call.
type orgView struct {
	t   OrgScoped
	org string
}

var _ OrgTx = orgView{}

func (o orgView) CreateToken(ctx context.Context, tok Token) error {
	tok.OrgID = o.org
	return o.t.OrgCreateToken(ctx, tok)
}
func (o orgView) GetToken(ctx context.Context, id string) (Token, error) {
	return o.t.OrgGetToken(ctx, o.org, id)
}
func (o orgView) ListTokens(ctx context.Context, opts api.ListOptions) (api.Page[Token], error) {
	return o.t.OrgListTokens(ctx, o.org, opts)
}
func (o orgView) RevokeToken(ctx context.Context, id string, at time.Time) error {
	return o.t.OrgRevokeToken(ctx, o.org, id, at)
}
func (o orgView) CreateCloud(ctx context.Context, c api.Cloud) error {
	return o.t.OrgCreateCloud(ctx, o.org, c)
}
func (o orgView) GetCloud(ctx context.Context, id string) (api.Cloud, error) {
	return o.t.OrgGetCloud(ctx, o.org, id)
}
func (o orgView) ListClouds(ctx context.Context, f NameFilter, opts api.ListOptions) (api.Page[api.Cloud], error) {
	return o.t.OrgListClouds(ctx, o.org, f, opts)
}
func (o orgView) UpdateCloud(ctx context.Context, c api.Cloud) error {
	return o.t.OrgUpdateCloud(ctx, o.org, c)
}
func (o orgView) DeleteCloud(ctx context.Context, id string) error {
	return o.t.OrgDeleteCloud(ctx, o.org, id)
}
func (o orgView) GetCloudSecret(ctx context.Context, id string) (string, error) {
	return o.t.OrgGetCloudSecret(ctx, o.org, id)
}
func (o orgView) CreateComputeConfig(ctx context.Context, cc api.ComputeConfig) error {
	return o.t.OrgCreateComputeConfig(ctx, o.org, cc)
}
func (o orgView) GetComputeConfig(ctx context.Context, id string, v int) (api.ComputeConfig, error) {
	return o.t.OrgGetComputeConfig(ctx, o.org, id, v)
}
func (o orgView) ListComputeConfigs(ctx context.Context, f NameFilter, opts api.ListOptions) (api.Page[api.ComputeConfig], error) {
	return o.t.OrgListComputeConfigs(ctx, o.org, f, opts)
}
func (o orgView) ListComputeConfigVersions(ctx context.Context, id string, opts api.ListOptions) (api.Page[api.ComputeConfig], error) {
	return o.t.OrgListComputeConfigVersions(ctx, o.org, id, opts)
}
func (o orgView) AddComputeConfigVersion(ctx context.Context, cc api.ComputeConfig) error {
	return o.t.OrgAddComputeConfigVersion(ctx, o.org, cc)
}
func (o orgView) RenameComputeConfig(ctx context.Context, id, name string, at time.Time) error {
	return o.t.OrgRenameComputeConfig(ctx, o.org, id, name, at)
}
func (o orgView) DeleteComputeConfig(ctx context.Context, id string) error {
	return o.t.OrgDeleteComputeConfig(ctx, o.org, id)
}
func (o orgView) CreateCluster(ctx context.Context, c api.Cluster) error {
	return o.t.OrgCreateCluster(ctx, o.org, c)
}
func (o orgView) GetCluster(ctx context.Context, id string) (api.Cluster, error) {
	return o.t.OrgGetCluster(ctx, o.org, id)
}
func (o orgView) ListClusters(ctx context.Context, f ClusterFilter, opts api.ListOptions) (api.Page[api.Cluster], error) {
	return o.t.OrgListClusters(ctx, o.org, f, opts)
}
func (o orgView) UpdateCluster(ctx context.Context, c api.Cluster) error {
	return o.t.OrgUpdateCluster(ctx, o.org, c)
}
func (o orgView) DeleteCluster(ctx context.Context, id string) error {
	return o.t.OrgDeleteCluster(ctx, o.org, id)
}
func (o orgView) RequestClusterDelete(ctx context.Context, id string, at time.Time) error {
	return o.t.OrgRequestClusterDelete(ctx, o.org, id, at)
}
func (o orgView) GetIdempotencyKey(ctx context.Context, key string) (IdempotencyRecord, error) {
	return o.t.OrgGetIdempotencyKey(ctx, o.org, key)
}
func (o orgView) PutIdempotencyKey(ctx context.Context, rec IdempotencyRecord) error {
	return o.t.OrgPutIdempotencyKey(ctx, o.org, rec)
}
func (o orgView) ListNodes(ctx context.Context, clusterID string, opts api.ListOptions) (api.Page[api.Node], error) {
	return o.t.OrgListNodes(ctx, o.org, clusterID, opts)
}
func (o orgView) ListClusterEvents(ctx context.Context, clusterID string, opts api.ListOptions) (api.Page[api.ClusterEvent], error) {
	return o.t.OrgListClusterEvents(ctx, o.org, clusterID, opts)
}

// ListAuditEvents answers the organization's events; the org id "" holds
// the failures of callers no token identified.
func (o orgView) ListAuditEvents(ctx context.Context, unidentified bool, f api.AuditFilter, opts api.ListOptions) (api.Page[api.AuditEvent], error) {
	orgs := []string{o.org}
	if unidentified {
		orgs = append(orgs, "")
	}
	return o.t.OrgListAuditEvents(ctx, orgs, f, opts)
}
