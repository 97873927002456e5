package service

import "github.com/rayplane/rayplane/internal/api"

// A sim cloud's nodes are simulated by the operator's fleet (`rayplaned
// fleet`), a process on the operator's machines: whether an organization
// may declare one is the operator's choice (SimAllowed), as for local
// clouds.

func (cp *ControlPlane) simAllowed(org api.Organization) bool {
	if cp.SimAllowed == nil {
		return org.System
	}
	return cp.SimAllowed(org)
}

// checkSimCloud applies the operator's rule to a checked sim cloud spec.
func (cp *ControlPlane) checkSimCloud(c Caller, spec *api.CloudSpec) error {
	if spec.Provider != api.ProviderSim || cp.simAllowed(c.Org) {
		return nil
	}
	return &api.Error{Code: api.CodeInvalid, Message: "this organization may not declare sim clouds",
		Fields: []api.FieldError{{Field: "provider", Reason: "sim nodes are simulated by the operator's fleet, and its " +
			"operator has not allowed this organization to use it; choose aws, gcp or kubernetes"}}}
}
