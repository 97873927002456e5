// Package backendtest helps the drivers' test packages (awstest, gcptest)
// with the stand-in backends they start as processes (moto_server,
// fake-gcs-server). It is for tests only and must never be imported by
// production code.
package backendtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// WaitOK polls url with GET until it answers 200, or ctx ends (answered
// with the last attempt's error). Each attempt waits up to attempt for its
// answer (a socket that already listens queues the connection until the
// backend accepts it); between failed attempts it backs off from backoff,
// doubling up to maxBackoff.
func WaitOK(ctx context.Context, url string, attempt, backoff, maxBackoff time.Duration) error {
	client := &http.Client{Timeout: attempt}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return errors.Join(ctx.Err(), err)
		case <-timer.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}
