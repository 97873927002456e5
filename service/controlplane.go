package service

import (
	"context"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// ControlPlane carries out what users ask of the control plane. Each
// method is one use case: it validates, resolves references, applies the
// domain's rules and writes the result in one transaction together with
// the call's audit event, so a change and its record commit or fail
// together. It knows neither HTTP nor SQL; it must not start goroutines.
type ControlPlane struct {
	Store Store
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Catalog answers a cloud's instance types through its driver; nil
	// means this control plane runs no drivers: no catalog checks, and
	// asking for a catalog is api.CodeUnavailable.
	Catalog CatalogFunc
	// Wake asks the reconciler for a pass after a cluster changed; nil
	// means nobody listens.
	Wake func()
	// CloudChanged asks for a cloud's credentials to be verified after it
	// was created or changed; nil means nobody listens.
	CloudChanged func()
	// VerifyNow verifies a cloud of organization orgID at once and records
	// the result (reconciler.Verifier.VerifyNow), for POST
	// /v1/clouds/{id}/verify; nil means this control plane verifies no
	// clouds on request (api.CodeUnavailable).
	VerifyNow func(ctx context.Context, orgID, cloudID string) error
	// Tokens batches token last-used times; nil means they are not kept.
	Tokens *LastUsed
	// Cache holds the tokens Authenticate reads; nil reads the store every
	// time. Store must then be Cache.Wrap's.
	Cache *Cache
	// Recent answers heartbeats not yet written to the store, so usage is
	// the latest reported; nil means the stored usage only.
	Recent RecentUsage
	// LocalStorageRoot holds a directory per organization, <root>/<org id>/,
	// which local clouds' storage locations must be in; "" refuses any
	// location but the default (see localstorage.go).
	LocalStorageRoot string
	// LocalAllowed reports whether an organization may declare local
	// clouds, whose nodes run on the control plane's own host: the
	// operator's choice. Nil allows the system organization only.
	LocalAllowed func(org api.Organization) bool
	// SimAllowed reports whether an organization may declare sim clouds,
	// whose nodes the operator's fleet simulates: the operator's choice.
	// Nil allows the system organization only.
	SimAllowed func(org api.Organization) bool
}

// CatalogFunc answers the instance types a cloud of organization orgID
// offers; secret is the cloud's write-only credential, if any.
type CatalogFunc func(ctx context.Context, orgID string, c api.Cloud, secret string) ([]api.InstanceType, error)

// Caller is who makes a request and what they call: the token and its
// organization as authentication found them, the route's audit action,
// and where the request came from.
type Caller struct {
	Token      Token
	Org        api.Organization
	Action     string
	RemoteAddr string
}

// OrgID is the caller's organization.
func (c Caller) OrgID() string { return c.Org.ID }

// Event is the audit event of c's call with result (api.AuditSuccess or an
// error code) on target.
func (c Caller) Event(result, reason, targetType, targetID string, now time.Time) api.AuditEvent {
	return api.AuditEvent{
		ID:         NewID(PrefixAuditEvent, now),
		OrgID:      c.Org.ID,
		ActorID:    c.Token.ID,
		Action:     c.Action,
		TargetType: targetType,
		TargetID:   targetID,
		Result:     result,
		Reason:     reason,
		RemoteAddr: c.RemoteAddr,
		Time:       now,
	}
}

func (cp *ControlPlane) now() time.Time {
	if cp.Now == nil {
		return time.Now().UTC()
	}
	return cp.Now().UTC()
}

func (cp *ControlPlane) wake() {
	if cp.Wake != nil {
		cp.Wake()
	}
}

func (cp *ControlPlane) cloudChanged() {
	if cp.CloudChanged != nil {
		cp.CloudChanged()
	}
}

// change runs fn in one write transaction on the caller's organization
// and records the call's success there too. fn answers the target of the
// change for the audit event.
func (cp *ControlPlane) change(ctx context.Context, c Caller, fn func(tx OrgTx) (targetType, targetID string, err error)) error {
	return cp.Store.Update(ctx, func(tx Tx) error {
		typ, id, err := fn(tx.Org(c.OrgID()))
		if err != nil {
			return err
		}
		return tx.System().AddAuditEvent(ctx, c.Event(api.AuditSuccess, "", typ, id, cp.now()))
	})
}

// read runs fn in one read transaction on the caller's organization.
func read[T any](ctx context.Context, cp *ControlPlane, c Caller, fn func(tx OrgTx) (T, error)) (T, error) {
	var v T
	err := cp.Store.View(ctx, func(tx Tx) (err error) {
		v, err = fn(tx.Org(c.OrgID()))
		return err
	})
	return v, err
}

// Record writes one audit event in a transaction of its own: the failure
// of a call (whose own transaction rolled back) or of an authentication.
func (cp *ControlPlane) Record(ctx context.Context, e api.AuditEvent) error {
	return cp.Store.Update(ctx, func(tx Tx) error { return tx.System().AddAuditEvent(ctx, e) })
}

// ListAuditEvents answers the caller's organization's audit events; admins
// of the system organization also see failures of unidentified callers.
func (cp *ControlPlane) ListAuditEvents(ctx context.Context, c Caller, f api.AuditFilter, opts api.ListOptions) (api.Page[api.AuditEvent], error) {
	return read(ctx, cp, c, func(tx OrgTx) (api.Page[api.AuditEvent], error) {
		return tx.ListAuditEvents(ctx, c.Org.System, f, opts)
	})
}
