package gcp

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/cloudresourcemanager/v3"
	"google.golang.org/api/option"

	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/gcp/gcprole"
)

// The checks of Verify, as a failure names them.
const (
	CheckImpersonation = "impersonation"
	CheckPermissions   = "permissions"
	CheckZones         = "zones"
	CheckImage         = "image"
	CheckNetwork       = "network"
	CheckSubnetwork    = "subnetwork"
	CheckMachineTypes  = "machine types"
)

// verification records the failed checks of Verify; failed knows the
// driver's errors.
type verification struct{ cloud.Verification }

// failed records err of a call that should have worked.
func (v *verification) failed(check string, err error, format string, args ...any) {
	v.Fail(check, kindOf(err), "%s: %s", fmt.Sprintf(format, args...), brief(err))
}

// Verify checks, with freshly minted tokens rather than the cache's, that:
//  1. the control plane can impersonate the service account (it holds
//     roles/iam.serviceAccountTokenCreator on it; with a workload identity
//     provider, STS accepts the subject token first);
//  2. the service account holds the permissions of gcprole this cloud needs
//     (projects.testIamPermissions), each missing one named;
//  3. the zones exist and are in the cloud's region;
//  4. the image (or the family's current image) exists and is ready;
//  5. the network exists, and the subnetwork, when set, exists in the
//     cloud's region (and in the network, when both are set);
//  6. every declared machine type is offered in every zone.
//
// It answers nil or one *cloud.Error whose Err is a *cloud.VerifyError naming
// every failed check: of kind auth when impersonation fails (the other
// checks need it and are not run), transient when every failure was a
// timeout or throttling, invalid otherwise.
func (d *Driver) Verify(ctx context.Context) error {
	var v verification
	creds, err := d.impersonated()
	if err == nil {
		_, err = creds.Token(ctx)
	}
	if err != nil {
		v.Fail(CheckImpersonation, kindOf(err), "the control plane cannot impersonate %s (grant it roles/iam.serviceAccountTokenCreator on the service account): %s",
			d.cfg.Cloud.ServiceAccount, clip(err.Error(), 500))
		return v.Result(true)
	}
	c, err := d.newClients(ctx, option.WithAuthCredentials(creds))
	if err != nil {
		return err
	}
	defer c.close()

	d.verifyPermissions(ctx, c, &v)
	d.verifyZones(ctx, c, &v)
	d.verifyImage(ctx, c, &v)
	d.verifyNetwork(ctx, c, &v)
	d.verifyMachineTypes(ctx, c, &v)
	return v.Result(false)
}

// verifyPermissions names each permission of gcprole the service account
// lacks on the project, of those this cloud's launches need (actAs and
// setServiceAccount only with a node service account).
func (d *Driver) verifyPermissions(ctx context.Context, c *clients, v *verification) {
	want := gcprole.PermissionsFor(d.cfg.Cloud.NodeServiceAccount != "")
	out, err := c.projects.TestIamPermissions("projects/"+d.project,
		&cloudresourcemanager.TestIamPermissionsRequest{Permissions: want}).Context(ctx).Do()
	if err != nil {
		v.failed(CheckPermissions, err, "projects.testIamPermissions on %s", d.project)
		return
	}
	granted := out.Permissions
	for _, p := range want {
		if !slices.Contains(granted, p) {
			v.Fail(CheckPermissions, cloud.Invalid, "the service account %s lacks %s on project %s", d.cfg.Cloud.ServiceAccount, p, d.project)
		}
	}
}

func (d *Driver) verifyZones(ctx context.Context, c *clients, v *verification) {
	for _, z := range d.cfg.Cloud.Zones {
		got, err := c.zones.Get(ctx, &computepb.GetZoneRequest{Project: d.project, Zone: z}, d.retry())
		switch {
		case isNotFound(err):
			v.Fail(CheckZones, cloud.Invalid, "zone %s does not exist", z)
		case err != nil:
			v.failed(CheckZones, err, "zones.get %s", z)
		case got.GetName() != z:
			v.Fail(CheckZones, cloud.Transient, "zones.get %s answered %q", z, clip(got.GetName(), 80))
		case lastSegment(got.GetRegion()) != d.cfg.Region:
			v.Fail(CheckZones, cloud.Invalid, "zone %s is in region %s, not the cloud's %s", z, clip(lastSegment(got.GetRegion()), 80), d.cfg.Region)
		}
	}
}

func (d *Driver) verifyImage(ctx context.Context, c *clients, v *verification) {
	m := imagePattern.FindStringSubmatch(d.cfg.Cloud.Image)
	project, family, name := m[1], m[2] != "", m[3]
	var img *computepb.Image
	var err error
	if family {
		img, err = c.images.GetFromFamily(ctx, &computepb.GetFromFamilyImageRequest{Project: project, Family: name}, d.retry())
	} else {
		img, err = c.images.Get(ctx, &computepb.GetImageRequest{Project: project, Image: name}, d.retry())
	}
	switch {
	case isNotFound(err) && family:
		v.Fail(CheckImage, cloud.Invalid, "image family %s has no image in project %s (or it is not shared with the service account)", name, project)
	case isNotFound(err):
		v.Fail(CheckImage, cloud.Invalid, "image %s does not exist (or is not shared with the service account)", d.cfg.Cloud.Image)
	case err != nil:
		v.failed(CheckImage, err, "image %s", d.cfg.Cloud.Image)
	case img.Status != nil && img.GetStatus() != "READY":
		v.Fail(CheckImage, cloud.Invalid, "image %s is %s, not READY", d.cfg.Cloud.Image, clip(img.GetStatus(), 40))
	}
}

func (d *Driver) verifyNetwork(ctx context.Context, c *clients, v *verification) {
	nm := networkPattern.FindStringSubmatch(d.network)
	if d.cfg.Cloud.Network != "" || d.subnetwork == "" {
		_, err := c.networks.Get(ctx, &computepb.GetNetworkRequest{Project: nm[1], Network: nm[2]}, d.retry())
		switch {
		case isNotFound(err):
			v.Fail(CheckNetwork, cloud.Invalid, "network %s does not exist", d.network)
		case err != nil:
			v.failed(CheckNetwork, err, "network %s", d.network)
		}
	}
	if d.subnetwork == "" {
		return
	}
	sm := subnetworkPattern.FindStringSubmatch(d.subnetwork)
	got, err := c.subnetworks.Get(ctx, &computepb.GetSubnetworkRequest{Project: sm[1], Region: sm[2], Subnetwork: sm[3]}, d.retry())
	switch {
	case isNotFound(err):
		v.Fail(CheckSubnetwork, cloud.Invalid, "subnetwork %s does not exist", d.subnetwork)
	case err != nil:
		v.failed(CheckSubnetwork, err, "subnetwork %s", d.subnetwork)
	case d.cfg.Cloud.Network != "" && got.Network != nil && !strings.HasSuffix(got.GetNetwork(), "/"+d.network):
		v.Fail(CheckSubnetwork, cloud.Invalid, "subnetwork %s is in network %s, not %s", d.subnetwork, clip(got.GetNetwork(), 200), d.network)
	}
}

// verifyMachineTypes gets every declared type in every zone (up to 64 ×
// 16), parallelGets at a time, and names each one not offered.
func (d *Driver) verifyMachineTypes(ctx context.Context, c *clients, v *verification) {
	types, zones := d.cfg.Cloud.MachineTypes, d.cfg.Cloud.Zones
	errs := make([]error, len(types)*len(zones))
	parallel(len(errs), func(i int) {
		t, z := types[i/len(zones)].Name, zones[i%len(zones)]
		_, errs[i] = c.machineTypes.Get(ctx, &computepb.GetMachineTypeRequest{Project: d.project, Zone: z, MachineType: t}, d.retry())
	})
	for i, err := range errs {
		t, z := types[i/len(zones)].Name, zones[i%len(zones)]
		switch {
		case isNotFound(err):
			v.Fail(CheckMachineTypes, cloud.Invalid, "machine type %s is not offered in zone %s", t, z)
		case err != nil:
			v.failed(CheckMachineTypes, err, "machine type %s in %s", t, z)
		}
	}
}
