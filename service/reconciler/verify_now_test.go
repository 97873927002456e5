package reconciler

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/service"
)

// changingDriver changes its cloud (as a user's PUT would) while it is
// being verified.
type changingDriver struct {
	cloud.Driver
	change func()
}

func (d changingDriver) Verify(context.Context) error { d.change(); return nil }

// TestVerifyNow: a verification on request answers once its result is
// recorded, and says so when there is none: another organization's cloud
// is not found, a panic is an internal error that leaves the status as it
// was, a driver that hangs past its deadline is unavailable without holding
// the caller, a cloud that keeps changing is a conflict.
func TestVerifyNow(t *testing.T) {
	ctx := t.Context()
	st, _, org, _ := sealedStore(t)
	ids := map[string]string{}
	var changing api.Cloud
	for _, name := range []string{"good", "bad", "panics", "hangs", "changes"} {
		spec := api.CloudSpec{Name: name, Provider: api.ProviderAWS, Region: "us-east-1", StorageLocation: "s3://rayplane-logs/" + name,
			AWS: &api.AWSCloud{RoleARN: "arn:aws:iam::123456789012:role/rayplane", SubnetIDs: []string{"subnet-0123456789abcdef0"}, ImageID: "ami-0123456789abcdef0"}}
		c := service.NewCloud(spec, time.Now().UTC())
		if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, c) }); err != nil {
			t.Fatal(err)
		}
		ids[name] = c.ID
		if name == "changes" {
			changing = c
		}
	}
	release := make(chan struct{})
	defer close(release)
	v := NewVerifier(VerifierConfig{Store: st, Timeout: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
		Drivers: func(_ context.Context, _ string, c api.Cloud, _ string) (cloud.Driver, error) {
			switch c.Name {
			case "bad":
				return &verifyDriver{err: cloud.Errorf(cloud.Auth, "verify", "the role cannot be assumed with the external id")}, nil
			case "panics":
				return panickyVerifier{behave: "panic"}, nil
			case "hangs":
				return panickyVerifier{behave: "hang", release: release}, nil
			case "changes":
				return changingDriver{change: func() {
					changing.UpdatedAt = changing.UpdatedAt.Add(time.Millisecond)
					if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).UpdateCloud(ctx, changing) }); err != nil {
						t.Error(err)
					}
				}}, nil
			}
			return &verifyDriver{}, nil
		}})
	v.grace = 100 * time.Millisecond
	get := func(id string) api.Cloud {
		var c api.Cloud
		if err := st.View(ctx, func(tx service.Tx) (err error) { c, err = tx.Org(org).GetCloud(ctx, id); return err }); err != nil {
			t.Fatal(err)
		}
		return c
	}

	if err := v.VerifyNow(ctx, org, ids["good"]); err != nil || get(ids["good"]).Status != api.CloudActive {
		t.Errorf("good: %v, status %s", err, get(ids["good"]).Status)
	}
	if err := v.VerifyNow(ctx, org, ids["bad"]); err != nil {
		t.Errorf("bad: %v", err)
	} else if c := get(ids["bad"]); c.Status != api.CloudError || c.StatusReason != "verification failed (auth): verify: auth: the role cannot be assumed with the external id" {
		t.Errorf("bad: %s (%s)", c.Status, c.StatusReason)
	}
	if err := v.VerifyNow(ctx, "org_00000000000000000000000000", ids["good"]); !api.IsCode(err, api.CodeNotFound) {
		t.Errorf("another organization's cloud: %v", err)
	}
	if err := v.VerifyNow(ctx, org, ids["panics"]); err == nil || api.ErrorCode(err) != api.CodeInternal {
		t.Errorf("panic: %v (%s)", err, api.ErrorCode(err))
	} else if s := get(ids["panics"]).Status; s != api.CloudVerifying {
		t.Errorf("panic: status %s, want it left verifying", s)
	}
	start := time.Now()
	if err := v.VerifyNow(ctx, org, ids["hangs"]); !api.IsCode(err, api.CodeUnavailable) {
		t.Errorf("hang: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("hang held the caller %s", d)
	}
	if err := v.VerifyNow(ctx, org, ids["changes"]); !api.IsCode(err, api.CodeConflict) {
		t.Errorf("a cloud that keeps changing: %v", err)
	}
}
