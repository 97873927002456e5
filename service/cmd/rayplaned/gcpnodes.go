package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	rpapi "github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	gcpdriver "github.com/rayplane/rayplane/internal/cloud/gcp"
	"github.com/rayplane/rayplane/service"
)

// gcpClouds hands out the GCP driver of each gcp cloud. Every call in a
// customer project is made as the customer's service account, impersonated
// either with a federated identity of the cloud's own (the control plane's
// subject token for the cloud, exchanged through the cloud's workload
// identity provider) or, for the organizations the operator allows, with
// the control plane's own Google identity (Application Default
// Credentials). A driver is kept per cloud, so its tokens are cached and
// its memory of spot capacity errors lasts, and built anew when the
// cloud's settings change.
type gcpClouds struct {
	log       *slog.Logger
	endpoint  string    // --gcp-api-endpoint
	principal string    // --gcp-principal
	direct    orgPolicy // --gcp-direct-orgs
	names     *orgNames
	issuer    *gcpIssuer

	drivers driverCache[cloud.Driver]
}

// errGCPDirect is why a cloud without a workload identity provider is
// refused to an organization the operator did not allow.
var errGCPDirect = errors.New("this control plane impersonates service accounts with its own Google identity only for " +
	"the organizations its operator allows (--gcp-direct-orgs); declare gcp.workload_identity_provider so the " +
	"control plane reaches your service account with this cloud's own federated identity")

func (g *gcpClouds) driverFor(ctx context.Context, orgID string, c rpapi.Cloud) (cloud.Driver, error) {
	if c.GCP == nil {
		return nil, cloud.Errorf(cloud.Invalid, "driver", "the cloud has no gcp settings")
	}
	if c.GCP.WorkloadIdentityProvider == "" {
		name, err := g.names.name(ctx, orgID)
		if err != nil {
			return nil, err
		}
		if !g.direct.allows(name) {
			return nil, &cloud.Error{Kind: cloud.Auth, Op: "driver", Err: errGCPDirect}
		}
	}
	settings := struct {
		Region, Storage string
		GCP             *rpapi.GCPCloud
	}{c.Region, c.StorageLocation, c.GCP}
	return g.drivers.get(c.ID, settings, func() (cloud.Driver, error) {
		cfg := gcpdriver.Config{
			OrgID: orgID, CloudID: c.ID, Region: c.Region, Cloud: *c.GCP,
			StorageLocation: c.StorageLocation, Endpoint: g.endpoint, Logger: g.log,
		}
		if p := c.GCP.WorkloadIdentityProvider; p != "" {
			cloudID := c.ID
			cfg.SubjectToken = func(ctx context.Context) (string, error) {
				return g.issuer.SubjectToken(ctx, orgID, cloudID, p)
			}
		}
		d, err := gcpdriver.New(cfg)
		if err != nil {
			return nil, &cloud.Error{Kind: cloud.Invalid, Op: "driver", Err: err}
		}
		return d, nil
	}, nil)
}

// Identity answers what customers grant: the control plane's own Google
// identity (for direct impersonation; "" when it has none) and the OIDC
// issuer and keys their workload identity pool provider trusts.
func (g *gcpClouds) Identity(ctx context.Context) (principal, issuer, jwks string, err error) {
	jwks, err = g.issuer.JWKS()
	if err != nil {
		return "", "", "", err
	}
	principal = g.principal
	if principal == "" {
		if p, perr := gcpdriver.Principal(ctx, gcpdriver.Config{Endpoint: g.endpoint}); perr == nil {
			principal = p
		} else {
			g.log.Debug("the control plane has no Google identity of its own", "error", perr)
		}
	}
	return strings.TrimSpace(principal), g.issuer.Issuer(), jwks, nil
}

// setupGCP reads the operator's GCP settings and the federation signing key.
func setupGCP(cfg serveConfig, dataDir, advertise string, st service.Store, log *slog.Logger) (*gcpClouds, error) {
	direct, err := parseOrgPolicy("gcp-direct-orgs", cfg.gcpDirectOrgs)
	if err != nil {
		return nil, err
	}
	issuerURL := cfg.gcpIssuer
	if issuerURL == "" {
		issuerURL = advertise
	}
	if u, err := url.Parse(issuerURL); err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--gcp-oidc-issuer: %q must be an https:// URL without query or fragment (Google requires one)", issuerURL)
	}
	issuer, err := loadGCPIssuer(dataDir, strings.TrimSuffix(issuerURL, "/"))
	if err != nil {
		return nil, err
	}
	return &gcpClouds{log: log, endpoint: cfg.gcpEndpoint, principal: cfg.gcpPrincipal, direct: direct,
		names: &orgNames{st: st}, issuer: issuer}, nil
}
