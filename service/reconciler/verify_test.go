package reconciler

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/sqlite"
)

// verifyDriver answers Verify with err; nothing else is called.
type verifyDriver struct {
	cloud.Driver
	mu    sync.Mutex
	err   error
	calls int
}

func (d *verifyDriver) Verify(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	return d.err
}

// TestVerifier: a cloud is verified through its driver when it is new or
// its credentials changed, and again once the last verification is old;
// its status says what came of it, with the reason; a transient failure
// changes nothing it knew, and a result never overwrites a newer change.
func TestVerifier(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rayplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tok, _, err := service.Bootstrap(ctx, st, time.Now().UTC())
	if err != nil {
		t.Fatal(err)
	}
	org := tok.OrgID
	clock := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	driver := &verifyDriver{}
	noDriver := false
	v := NewVerifier(VerifierConfig{Store: st, Now: func() time.Time { return clock }, Recheck: 10 * time.Minute,
		Drivers: func(context.Context, string, api.Cloud, string) (cloud.Driver, error) {
			if noDriver {
				return nil, errors.New("this control plane has no aws driver")
			}
			return driver, nil
		}})
	spec := api.CloudSpec{Name: "acct", Provider: api.ProviderAWS, Region: "us-east-1", StorageLocation: "s3://rayplane-logs/prefix",
		AWS: &api.AWSCloud{RoleARN: "arn:aws:iam::123456789012:role/rayplane", SubnetIDs: []string{"subnet-0123456789abcdef0"}, ImageID: "ami-0123456789abcdef0"}}
	if err := service.CheckCloud(&spec); err != nil {
		t.Fatal(err)
	}
	c := service.NewCloud(spec, clock)
	if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, c) }); err != nil {
		t.Fatal(err)
	}
	read := func() api.Cloud {
		t.Helper()
		var out api.Cloud
		if err := st.View(ctx, func(tx service.Tx) (err error) { out, err = tx.Org(org).GetCloud(ctx, c.ID); return err }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	step := func(name, wantStatus, wantReason string, wantCalls int) {
		t.Helper()
		if err := v.VerifyAll(ctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := read()
		if got.Status != wantStatus || !strings.Contains(got.StatusReason, wantReason) || driver.calls != wantCalls {
			t.Fatalf("%s: status %s (%q) after %d verifications, want %s (%q) after %d", name, got.Status, got.StatusReason, driver.calls,
				wantStatus, wantReason, wantCalls)
		}
	}

	if read().Status != api.CloudVerifying {
		t.Fatalf("a new aws cloud is %s, want verifying", read().Status)
	}
	driver.err = cloud.Errorf(cloud.Transient, "verify", "sts: throttled")
	step("throttled while verifying", api.CloudVerifying, "will be retried: verify: transient: sts: throttled", 1)
	driver.err = cloud.Errorf(cloud.Auth, "verify", "AssumeRole refused: the role does not trust this external id")
	step("refused", api.CloudError, "verification failed (auth)", 2)
	step("not due again", api.CloudError, "verification failed (auth)", 2)
	if got := read(); got.LastVerifiedAt == nil || !got.LastVerifiedAt.Equal(clock) {
		t.Fatalf("last_verified_at %v, want %s", got.LastVerifiedAt, clock)
	}

	// The user fixes the role: the change sends the cloud back to
	// verifying, and the next look verifies it.
	spec.AWS.RoleARN = "arn:aws:iam::123456789012:role/fixed"
	if err := st.Update(ctx, func(tx service.Tx) error {
		old, err := tx.Org(org).GetCloud(ctx, c.ID)
		if err != nil {
			return err
		}
		clock = clock.Add(time.Second)
		updated, err := service.ReplaceCloud(old, spec, clock)
		if err != nil {
			return err
		}
		return tx.Org(org).UpdateCloud(ctx, updated)
	}); err != nil {
		t.Fatal(err)
	}
	if read().Status != api.CloudVerifying {
		t.Fatalf("changed credentials: %s, want verifying", read().Status)
	}
	driver.err = nil
	step("fixed", api.CloudActive, "credentials verified", 3)

	// Due again after Recheck; a transient failure keeps what was known.
	clock = clock.Add(11 * time.Minute)
	driver.err = cloud.Errorf(cloud.Transient, "verify", "timeout")
	step("recheck, transient", api.CloudActive, "credentials verified", 4)
	driver.err = cloud.Errorf(cloud.Auth, "verify", "role deleted")
	step("recheck, access revoked", api.CloudError, "role deleted", 5)

	// No driver for the provider: an error that says so.
	clock = clock.Add(11 * time.Minute)
	noDriver = true
	step("no driver", api.CloudError, "no driver for this cloud: this control plane has no aws driver", 5)

	// A verification of a cloud that changed since it was read is dropped.
	noDriver, driver.err = false, nil
	stale := service.CloudRecord{Cloud: read(), OrgID: org}
	stale.UpdatedAt = stale.UpdatedAt.Add(-time.Hour)
	v.verify(ctx, stale)
	if got := read(); got.Status != api.CloudError {
		t.Fatalf("a stale verification overwrote the cloud: %s (%s)", got.Status, got.StatusReason)
	}
}

// panickyVerifier panics in Verify for one cloud, hangs past its deadline
// for another, and verifies the rest.
type panickyVerifier struct {
	cloud.Driver
	behave  string
	release chan struct{} // the hanging driver returns when the test ends
}

func (d panickyVerifier) Verify(ctx context.Context) error {
	switch d.behave {
	case "panic":
		panic("driver bug")
	case "hang":
		<-ctx.Done()
		<-d.release // ignores its deadline, as a broken driver may
	}
	return nil
}

// TestVerifierContainsFaults: a driver that panics, or hangs past its
// deadline, holds up no other cloud's verification; the panic is logged
// with its cloud's id and leaves that cloud's status as it was.
func TestVerifierContainsFaults(t *testing.T) {
	ctx := t.Context()
	st, _, org, _ := sealedStore(t)
	behaviour := map[string]string{}
	var ids []string
	for _, name := range []string{"panics", "hangs", "good"} {
		spec := api.CloudSpec{Name: name, Provider: api.ProviderAWS, Region: "us-east-1", StorageLocation: "s3://rayplane-logs/" + name,
			AWS: &api.AWSCloud{RoleARN: "arn:aws:iam::123456789012:role/rayplane", SubnetIDs: []string{"subnet-0123456789abcdef0"}, ImageID: "ami-0123456789abcdef0"}}
		c := service.NewCloud(spec, time.Now().UTC())
		if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, c) }); err != nil {
			t.Fatal(err)
		}
		behaviour[c.ID] = map[string]string{"panics": "panic", "hangs": "hang"}[name]
		ids = append(ids, c.ID)
	}
	logs := &syncBuffer{}
	release := make(chan struct{})
	v := NewVerifier(VerifierConfig{Store: st, Timeout: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Drivers: func(_ context.Context, _ string, c api.Cloud, _ string) (cloud.Driver, error) {
			return panickyVerifier{behave: behaviour[c.ID], release: release}, nil
		}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = v.VerifyAll(ctx) // returns only once the hanging driver does
	}()
	defer func() {
		close(release)
		<-done
	}()
	status := func(id string) string {
		var c api.Cloud
		if err := st.View(ctx, func(tx service.Tx) (err error) { c, err = tx.Org(org).GetCloud(ctx, id); return err }); err != nil {
			t.Fatal(err)
		}
		return c.Status
	}
	for deadline := time.Now().Add(time.Minute); status(ids[2]) != api.CloudActive; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the good cloud is %s a minute on; log:\n%s", status(ids[2]), logs.String())
		}
	}
	if got := status(ids[0]); got != api.CloudVerifying {
		t.Errorf("the panicking cloud is %s, want it left verifying", got)
	}
	for deadline := time.Now().Add(time.Minute); !strings.Contains(logs.String(), "panic while verifying a cloud"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no panic logged:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), "cloud_id="+ids[0]) {
		t.Errorf("the panic is logged without its cloud's id:\n%s", logs.String())
	}
}
