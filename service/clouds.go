package service

import (
	"context"
	"slices"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// NewCloud turns a checked spec into a cloud record. Clouds reached through
// a customer's role start as verifying until a driver has tried the
// credentials; the local cloud has no credentials and starts active (its
// driver is still verified, for its directories and the agent binary), with
// a storage location of its own unless it names one.
func NewCloud(spec api.CloudSpec, now time.Time) api.Cloud {
	c := api.Cloud{ID: NewID(PrefixCloud, now), CloudSpec: spec, CreatedAt: now, UpdatedAt: now}
	if c.AWS != nil {
		c.AWS.ExternalID = NewExternalID()
	}
	if c.Provider == api.ProviderLocal {
		if c.StorageLocation == "" {
			c.StorageLocation = DefaultLocalStorage(c.ID)
		}
		c.Status = api.CloudActive
	} else {
		c.Status, c.StatusReason = api.CloudVerifying, "waiting for the control plane to verify the credentials"
	}
	return c
}

// ReplaceCloud applies a checked spec to an existing cloud. The provider
// cannot change; the external id and a stored secret are kept; changed
// credentials send the cloud back to verifying.
func ReplaceCloud(old api.Cloud, spec api.CloudSpec, now time.Time) (api.Cloud, error) {
	if spec.Provider != old.Provider {
		return old, &api.Error{Code: api.CodeInvalid, Message: "a cloud's provider cannot be changed",
			Fields: []api.FieldError{{Field: "provider", Reason: "cannot be changed from " + old.Provider + "; create a new cloud"}}}
	}
	c := old
	c.CloudSpec = spec
	c.UpdatedAt = now
	if c.AWS != nil && old.AWS != nil {
		c.AWS.ExternalID = old.AWS.ExternalID
	}
	if c.Kubernetes != nil && old.Kubernetes != nil {
		// The stored token goes only where it was sent for: a new API
		// server (or a new CA, which can make another server trusted)
		// needs the token sent again, or a writer who cannot read it could
		// have the control plane hand it to a server of their own.
		if c.Kubernetes.Token == "" && old.Kubernetes.TokenSet &&
			(c.Kubernetes.APIServer != old.Kubernetes.APIServer || c.Kubernetes.CACertPEM != old.Kubernetes.CACertPEM) {
			return old, &api.Error{Code: api.CodeInvalid,
				Message: "the token must be sent again with a new api_server or ca_cert_pem",
				Fields: []api.FieldError{{Field: "kubernetes.token",
					Reason: "must be sent again when api_server or ca_cert_pem changes: the stored token is used only with the API server it was given for"}}}
		}
		c.Kubernetes.TokenSet = old.Kubernetes.TokenSet || c.Kubernetes.Token != ""
	}
	if c.StorageLocation == "" && c.Provider == api.ProviderLocal {
		c.StorageLocation = old.StorageLocation
	}
	if c.Provider != api.ProviderLocal && credentialsChanged(old, c) {
		c.Status, c.StatusReason = api.CloudVerifying, "credentials or settings changed; waiting for the control plane to verify them"
	}
	return c, nil
}

func credentialsChanged(a, b api.Cloud) bool {
	if a.Region != b.Region {
		return true
	}
	switch {
	case a.AWS != nil && b.AWS != nil:
		// Verification checks the role, the network, the image, the
		// instance profile and the storage bucket: any of them.
		x, y := a.AWS, b.AWS
		return x.RoleARN != y.RoleARN || !slices.Equal(x.SubnetIDs, y.SubnetIDs) ||
			!slices.Equal(x.SecurityGroupIDs, y.SecurityGroupIDs) || x.InstanceProfileARN != y.InstanceProfileARN ||
			x.ImageID != y.ImageID || a.StorageLocation != b.StorageLocation
	case a.GCP != nil && b.GCP != nil:
		// Verification checks the impersonation, the role's permissions,
		// the zones, network, image, machine types and the bucket: any of
		// them.
		return !gcpCloudEqual(*a.GCP, *b.GCP) || a.StorageLocation != b.StorageLocation
	case a.Kubernetes != nil && b.Kubernetes != nil:
		// Verification checks the token's rights in the namespace and the
		// settings the pods are made from: any of them, and a token sent.
		x, y := a.Kubernetes, b.Kubernetes
		return x.APIServer != y.APIServer || x.Namespace != y.Namespace || x.CACertPEM != y.CACertPEM || y.Token != "" ||
			x.Image != y.Image || !slices.Equal(x.InstanceTypes, y.InstanceTypes) || x.GPUResource != y.GPUResource ||
			x.ServiceAccountName != y.ServiceAccountName
	case a.Sim != nil && b.Sim != nil:
		// Verification asks the fleet; the shapes are what it simulates.
		return !slices.Equal(a.Sim.InstanceTypes, b.Sim.InstanceTypes)
	}
	return false
}

// setGCPSubject fills in a GCP cloud's read-only subject, whatever the
// request said: it names the cloud and its organization, so a grant to it
// lets no other tenant's cloud in.
func setGCPSubject(orgID string, c *api.Cloud) {
	if c.GCP != nil {
		c.GCP.Subject = api.GCPSubject(orgID, c.ID)
	}
}

// gcpCloudEqual reports whether two GCP clouds' settings are the same, every
// field (the machine types' prices too: they are the planner's).
func gcpCloudEqual(x, y api.GCPCloud) bool {
	return x.ServiceAccount == y.ServiceAccount && x.WorkloadIdentityProvider == y.WorkloadIdentityProvider &&
		x.ProjectID == y.ProjectID && slices.Equal(x.Zones, y.Zones) && x.Network == y.Network &&
		x.Subnetwork == y.Subnetwork && x.Image == y.Image && x.NodeServiceAccount == y.NodeServiceAccount &&
		slices.Equal(x.MachineTypes, y.MachineTypes)
}

// CreateCloud stores a new cloud of the caller's organization.
func (cp *ControlPlane) CreateCloud(ctx context.Context, c Caller, spec api.CloudSpec) (api.Cloud, error) {
	if err := CheckCloud(&spec); err != nil {
		return api.Cloud{}, err
	}
	if err := cp.checkLocalCloud(c, &spec); err != nil {
		return api.Cloud{}, err
	}
	if err := cp.checkSimCloud(c, &spec); err != nil {
		return api.Cloud{}, err
	}
	cloud := NewCloud(spec, cp.now())
	setGCPSubject(c.OrgID(), &cloud)
	err := cp.change(ctx, c, func(tx OrgTx) (_, _ string, err error) {
		if err := tx.CreateCloud(ctx, cloud); err != nil {
			return "cloud", cloud.ID, err
		}
		// Read back, so the answer is exactly what was stored and never
		// carries the write-only secret.
		cloud, err = tx.GetCloud(ctx, cloud.ID)
		return "cloud", cloud.ID, err
	})
	if err == nil {
		cp.cloudChanged()
	}
	return cloud, err
}

// ListClouds answers a page of the caller's organization's clouds.
func (cp *ControlPlane) ListClouds(ctx context.Context, c Caller, f NameFilter, opts api.ListOptions) (api.Page[api.Cloud], error) {
	return read(ctx, cp, c, func(tx OrgTx) (api.Page[api.Cloud], error) { return tx.ListClouds(ctx, f, opts) })
}

// GetCloud answers one cloud of the caller's organization.
func (cp *ControlPlane) GetCloud(ctx context.Context, c Caller, id string) (api.Cloud, error) {
	return read(ctx, cp, c, func(tx OrgTx) (api.Cloud, error) { return tx.GetCloud(ctx, id) })
}

// UpdateCloud replaces a cloud's declared fields; see ReplaceCloud.
func (cp *ControlPlane) UpdateCloud(ctx context.Context, c Caller, id string, spec api.CloudSpec) (api.Cloud, error) {
	if err := CheckCloud(&spec); err != nil {
		return api.Cloud{}, err
	}
	if err := cp.checkLocalCloud(c, &spec); err != nil {
		return api.Cloud{}, err
	}
	if err := cp.checkSimCloud(c, &spec); err != nil {
		return api.Cloud{}, err
	}
	var cloud api.Cloud
	err := cp.change(ctx, c, func(tx OrgTx) (_, _ string, err error) {
		old, err := tx.GetCloud(ctx, id)
		if err != nil {
			return "cloud", id, err
		}
		if cloud, err = ReplaceCloud(old, spec, cp.now()); err != nil {
			return "cloud", id, err
		}
		setGCPSubject(c.OrgID(), &cloud)
		if err := tx.UpdateCloud(ctx, cloud); err != nil {
			return "cloud", id, err
		}
		cloud, err = tx.GetCloud(ctx, id)
		return "cloud", id, err
	})
	if err == nil {
		cp.cloudChanged()
	}
	return cloud, err
}

// DeleteCloud removes a cloud no cluster uses.
func (cp *ControlPlane) DeleteCloud(ctx context.Context, c Caller, id string) error {
	return cp.change(ctx, c, func(tx OrgTx) (string, string, error) { return "cloud", id, tx.DeleteCloud(ctx, id) })
}

// InstanceTypes answers a cloud's catalog, as its driver knows it.
func (cp *ControlPlane) InstanceTypes(ctx context.Context, c Caller, cloudID string) ([]api.InstanceType, error) {
	var cloud api.Cloud
	var secret string
	err := cp.Store.View(ctx, func(tx Tx) (err error) {
		org := tx.Org(c.OrgID())
		if cloud, err = org.GetCloud(ctx, cloudID); err != nil {
			return err
		}
		secret, err = org.GetCloudSecret(ctx, cloudID)
		return err
	})
	if err != nil {
		return nil, err
	}
	types, err := cp.cloudCatalog(ctx, c.OrgID(), cloud, secret)
	if err != nil {
		return nil, err
	}
	if types == nil {
		types = []api.InstanceType{}
	}
	return types, nil
}

// errNoDrivers answers a catalog asked of a control plane without drivers.
var errNoDrivers = api.Errorf(api.CodeUnavailable, "this control plane runs no cloud drivers")

// cloudCatalog answers a cloud's instance types. A Kubernetes cloud's are
// the pod shapes it declares, answered without asking its API server, so
// compute configs are checked against them even while the cloud cannot be
// reached (its driver answers the same shapes to the reconciler). Other
// clouds' come from their driver.
func (cp *ControlPlane) cloudCatalog(ctx context.Context, orgID string, cloud api.Cloud, secret string) ([]api.InstanceType, error) {
	if cloud.Provider == api.ProviderKubernetes && cloud.Kubernetes != nil {
		return slices.Clone(cloud.Kubernetes.InstanceTypes), nil
	}
	if cloud.Provider == api.ProviderSim && cloud.Sim != nil {
		return cloud.Sim.Catalog(), nil // declared: nothing to ask
	}
	if cp.Catalog == nil {
		return nil, errNoDrivers
	}
	types, err := cp.Catalog(ctx, orgID, cloud, secret)
	if err != nil {
		return nil, api.Errorf(api.CodeUnavailable, "cloud %s: list instance types: %v", cloud.ID, err)
	}
	return types, nil
}

// VerifyCloud verifies a cloud of the caller's organization now, through
// the same code as the background verification, and answers the cloud
// with the status and reason it recorded.
func (cp *ControlPlane) VerifyCloud(ctx context.Context, c Caller, id string) (api.Cloud, error) {
	if _, err := cp.GetCloud(ctx, c, id); err != nil {
		return api.Cloud{}, err // another organization's cloud is not found before anything else
	}
	if cp.VerifyNow == nil {
		return api.Cloud{}, api.Errorf(api.CodeUnavailable, "this control plane does not verify clouds on request")
	}
	if err := cp.VerifyNow(ctx, c.OrgID(), id); err != nil {
		return api.Cloud{}, err
	}
	var cloud api.Cloud
	err := cp.change(ctx, c, func(tx OrgTx) (_, _ string, err error) {
		cloud, err = tx.GetCloud(ctx, id)
		return "cloud", id, err
	})
	return cloud, err
}
