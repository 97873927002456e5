package provider

import (
	"context"
	"sync"

	"github.com/hashicorp/terraform-plugin-framework/attr"

	"github.com/rayplane/rayplane/internal/api"
)

// plannedChanges remembers, for the rest of one plan, the values that the
// plan gives the clouds and compute configs it changes. Terraform plans a
// resource after the resources it refers to, in the same provider
// process, so a cluster planned after its cloud and compute config checks
// its minimum against the quota and spec they will have once applied, not
// the ones the control plane holds now: raising a quota together with the
// cluster that needs it is no false alarm.
//
// A nil value means the plan changes the object in ways not known until
// apply: the cluster's check then says nothing.
type plannedChanges struct {
	mu     sync.Mutex
	quotas map[string]*api.Quotas            // by cloud id
	specs  map[string]*api.ComputeConfigSpec // by compute config id
}

func newPlannedChanges() *plannedChanges {
	return &plannedChanges{quotas: map[string]*api.Quotas{}, specs: map[string]*api.ComputeConfigSpec{}}
}

// setQuotas records what the plan makes of a cloud's quotas; changed
// false forgets an earlier record (the plan leaves the cloud as it is).
func (p *plannedChanges) setQuotas(cloudID string, q *api.Quotas, changed bool) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !changed {
		delete(p.quotas, cloudID)
		return
	}
	p.quotas[cloudID] = q
}

// plannedQuotas answers the quotas the plan gives cloudID: changed false
// when the plan does not change them, a nil q when they are not known yet.
func (p *plannedChanges) plannedQuotas(cloudID string) (q *api.Quotas, changed bool) {
	if p == nil {
		return nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	q, changed = p.quotas[cloudID]
	return q, changed
}

// setSpec records what the plan makes of a compute config's spec, as
// setQuotas does for a cloud's quotas.
func (p *plannedChanges) setSpec(configID string, s *api.ComputeConfigSpec, changed bool) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !changed {
		delete(p.specs, configID)
		return
	}
	p.specs[configID] = s
}

// plannedSpec answers the spec the plan gives configID, as plannedQuotas.
func (p *plannedChanges) plannedSpec(configID string) (s *api.ComputeConfigSpec, changed bool) {
	if p == nil {
		return nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s, changed = p.specs[configID]
	return s, changed
}

// fullyKnown reports whether every value, however nested, is known.
func fullyKnown(ctx context.Context, vs ...attr.Value) bool {
	for _, v := range vs {
		tv, err := v.ToTerraformValue(ctx)
		if err != nil || !tv.IsFullyKnown() {
			return false
		}
	}
	return true
}
