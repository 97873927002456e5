package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/planner"
)

// VerifierConfig wires a Verifier. Durations of zero take defaults.
type VerifierConfig struct {
	Store   service.Store
	Drivers DriverFunc
	Logger  *slog.Logger
	Now     func() time.Time
	// Interval is how often the verifier looks for clouds to verify, when
	// nothing wakes it sooner; default 10s.
	Interval time.Duration
	// Recheck is how long a verification holds before the credentials are
	// tried again; default 10m.
	Recheck time.Duration
	// Timeout bounds one cloud's verification; default 30s.
	Timeout time.Duration
	// Concurrency is how many clouds are verified at once; default 4. A
	// cloud whose driver hangs past its deadline holds one slot, not the
	// others' verification.
	Concurrency int
}

// Verifier tries clouds' credentials through their drivers: as soon as a
// cloud is created or its credentials change, and again every Recheck, so
// that a role that stopped working shows on the cloud (status error, with
// the reason) before a launch fails on it. A transient failure (a timeout,
// throttling) leaves the status as it is and is tried again.
type Verifier struct {
	cfg  VerifierConfig
	log  *slog.Logger
	wake chan struct{}
	// grace is how long VerifyNow waits past the timeout for a result to
	// be recorded before it answers that the cloud did not answer.
	grace time.Duration
}

// NewVerifier applies defaults.
func NewVerifier(cfg VerifierConfig) *Verifier {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval == 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.Recheck == 0 {
		cfg.Recheck = 10 * time.Minute
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	return &Verifier{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1), grace: 10 * time.Second}
}

// Wake asks for a look soon (a cloud was created or changed).
func (v *Verifier) Wake() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// Run verifies until ctx ends.
func (v *Verifier) Run(ctx context.Context) {
	t := time.NewTicker(v.cfg.Interval)
	defer t.Stop()
	for {
		if err := v.VerifyAll(ctx); err != nil && ctx.Err() == nil {
			v.log.Warn("verify clouds", LogErr, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-v.wake:
		}
	}
}

// VerifyAll verifies every cloud that waits for it or is due again.
func (v *Verifier) VerifyAll(ctx context.Context) error {
	now := v.cfg.Now().UTC()
	var clouds []service.CloudRecord
	err := v.cfg.Store.View(ctx, func(tx service.Tx) (err error) {
		clouds, err = tx.DataPlane().ListCloudsToVerify(ctx, now.Add(-v.cfg.Recheck))
		return err
	})
	if err != nil {
		return err
	}
	slots := make(chan struct{}, v.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, c := range clouds {
		select {
		case <-ctx.Done():
			return nil
		case slots <- struct{}{}:
		}
		wg.Go(func() {
			defer func() { <-slots }()
			_ = v.verifyContained(ctx, c) // recorded, logged, or looked at again
		})
	}
	return nil
}

// VerifyNow verifies one cloud of organization orgID at once, as a look
// of Run would (the same driver call, timeout, containment of a panic, and
// a result recorded only if the cloud did not change meanwhile), and
// answers once the result is recorded: the caller reads the cloud for its
// status. It answers an api.Error when there is no result to read: the
// cloud is not the organization's (not_found), the cloud's API did not
// conclude (unavailable: a transient failure, or no answer within the
// timeout; a status it knew is kept), the cloud kept changing while it was
// verified (conflict), or the verification panicked (internal).
func (v *Verifier) VerifyNow(ctx context.Context, orgID, cloudID string) error {
	for range 3 {
		var rec service.CloudRecord
		err := v.cfg.Store.View(ctx, func(tx service.Tx) (err error) {
			rec, err = cloudRecord(ctx, tx.Org(orgID), orgID, cloudID)
			return err
		})
		if err != nil {
			return err
		}
		// A driver that ignores its context would hold the request for
		// ever: the caller is answered once the timeout (and a grace to
		// record the result) is over, and the verification goes on alone,
		// as a hanging one of Run holds one slot.
		done := make(chan error, 1)
		go func() { done <- v.verifyContained(ctx, rec) }()
		wait := time.NewTimer(v.cfg.Timeout + v.grace)
		select {
		case err = <-done:
			wait.Stop()
		case <-wait.C:
			return api.Errorf(api.CodeUnavailable, "the cloud did not answer its verification within %s; try again", v.cfg.Timeout)
		}
		if !errors.Is(err, errCloudChanged) {
			return err
		}
	}
	return api.Errorf(api.CodeConflict, "the cloud changed while it was verified; try again")
}

// cloudRecord reads one cloud with its secret, as ListCloudsToVerify
// answers each: a secret that does not open is the record's SecretErr.
func cloudRecord(ctx context.Context, org service.OrgTx, orgID, id string) (service.CloudRecord, error) {
	c, err := org.GetCloud(ctx, id)
	if err != nil {
		return service.CloudRecord{}, err
	}
	rec := service.CloudRecord{Cloud: c, OrgID: orgID}
	rec.Secret, rec.SecretErr = org.GetCloudSecret(ctx, id)
	return rec, nil
}

// errCloudChanged: a verification's result was not recorded because the
// cloud changed after it was read.
var errCloudChanged = errors.New("the cloud changed while it was verified")

// verifyContained verifies one cloud; a panic (a driver's, say) is that
// cloud's: logged with its id and stack, its status left as it was, and
// the other clouds verified all the same. It is tried again at the next
// look.
func (v *Verifier) verifyContained(ctx context.Context, c service.CloudRecord) (err error) {
	defer func() {
		if p := recover(); p != nil {
			v.log.Error("panic while verifying a cloud", "cloud_id", c.ID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("verify cloud %s: panic: %v", c.ID, p) // not an api.Error: answered as a generic 500
		}
	}()
	return v.verify(ctx, c)
}

// verify tries one cloud and records the result. It answers nil once a
// result is recorded; errCloudChanged when the cloud changed since c was
// read (and wakes the loop to look again); an api.Error (unavailable) for a
// transient failure, whether or not a reason was recorded; ctx's error or
// the store's.
func (v *Verifier) verify(ctx context.Context, c service.CloudRecord) error {
	status, reason := api.CloudActive, "credentials verified"
	var d cloud.Driver
	var transient error
	err := c.SecretErr
	if err != nil {
		// The key and the row are the operator's business: the log says
		// which, the tenant learns only what to do.
		v.log.Error("stored cloud credential does not decrypt", "cloud_id", c.ID, LogErr, err)
		status, reason = api.CloudError, "the stored credential cannot be decrypted: set it again"
	} else if d, err = v.cfg.Drivers(ctx, c.OrgID, c.Cloud, c.Secret); err != nil {
		status, reason = api.CloudError, fmt.Sprintf("no driver for this cloud: %v", err)
	} else {
		vctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
		err = d.Verify(vctx)
		cancel()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case cloud.KindOf(err) == cloud.Transient:
			v.log.Info("cloud verification will be retried", "cloud_id", c.ID, LogErr, err)
			transient = api.Errorf(api.CodeUnavailable, "the cloud's verification did not conclude: %v; try again", err)
			if c.Status != api.CloudVerifying {
				return transient // keep what the last verification found
			}
			status, reason = api.CloudVerifying, fmt.Sprintf("verification will be retried: %v", err)
		case c.Provider == api.ProviderLocal:
			// The local data plane is the operator's, and its errors name
			// the server's own paths: the log has them, the tenant not.
			v.log.Error("local data plane cannot run nodes", "cloud_id", c.ID, LogErr, err)
			status, reason = api.CloudError, "the control plane's local data plane cannot run nodes; its operator's log says why"
		default:
			status, reason = api.CloudError, fmt.Sprintf("verification failed (%s): %v", cloud.KindOf(err), err)
		}
	}
	now := v.cfg.Now().UTC()
	recorded := true
	err = v.cfg.Store.Update(ctx, func(tx service.Tx) error {
		// A driver's error may quote what a tenant's endpoint answered:
		// the reason is kept to the bound every status reason has.
		changed, err := tx.DataPlane().SetCloudVerification(ctx, c.ID, c.UpdatedAt, status, planner.Bounded(reason), now)
		recorded = changed
		return err
	})
	switch {
	case err != nil:
		if ctx.Err() == nil {
			v.log.Warn("record cloud verification", "cloud_id", c.ID, LogErr, err)
		}
		return err
	case !recorded:
		v.Wake() // the cloud changed since it was read: look again
		return errCloudChanged
	}
	return transient
}
