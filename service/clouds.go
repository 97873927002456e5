package service

import (
	"path/filepath"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// NewCloud turns a checked spec into a cloud record. Clouds reached through
// a customer's role start as verifying until a driver has tried the
// credentials; the local cloud needs none.
func NewCloud(spec api.CloudSpec, localStorageRoot string, now time.Time) api.Cloud {
	c := api.Cloud{ID: NewID(PrefixCloud, now), CloudSpec: spec, CreatedAt: now, UpdatedAt: now}
	if c.AWS != nil {
		c.AWS.ExternalID = NewExternalID()
	}
	if c.Provider == api.ProviderLocal {
		if c.StorageLocation == "" {
			c.StorageLocation = filepath.Join(localStorageRoot, c.ID)
		}
		c.Status = api.CloudActive
	} else {
		c.Status, c.StatusReason = api.CloudVerifying, "waiting for the control plane to verify the credentials"
	}
	c.StorageLocation = strings.TrimPrefix(c.StorageLocation, "file://")
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
		c.Kubernetes.TokenSet = old.Kubernetes.TokenSet || c.Kubernetes.Token != ""
	}
	if c.StorageLocation == "" && c.Provider == api.ProviderLocal {
		c.StorageLocation = old.StorageLocation
	}
	c.StorageLocation = strings.TrimPrefix(c.StorageLocation, "file://")
	if c.Provider != api.ProviderLocal && credentialsChanged(old, c) {
		c.Status, c.StatusReason = api.CloudVerifying, "credentials changed; waiting for the control plane to verify them"
	}
	return c, nil
}

func credentialsChanged(a, b api.Cloud) bool {
	if a.Region != b.Region {
		return true
	}
	switch {
	case a.AWS != nil && b.AWS != nil:
		return a.AWS.RoleARN != b.AWS.RoleARN
	case a.GCP != nil && b.GCP != nil:
		return *a.GCP != *b.GCP
	case a.Kubernetes != nil && b.Kubernetes != nil:
		return a.Kubernetes.APIServer != b.Kubernetes.APIServer || a.Kubernetes.Namespace != b.Kubernetes.Namespace ||
			a.Kubernetes.CACertPEM != b.Kubernetes.CACertPEM || b.Kubernetes.Token != ""
	}
	return false
}
