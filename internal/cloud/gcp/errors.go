package gcp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/googleapis/gax-go/v2"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/googleapi"

	"github.com/rayplane/rayplane/internal/cloud"
)

// codeKinds maps Compute Engine error codes (an operation's error codes,
// and the reasons of HTTP errors) to what the reconciler should do. Codes
// not here are classified by their HTTP status.
var codeKinds = map[string]cloud.Kind{
	// No machine of that kind now, in that zone: another zone, market or later.
	"ZONE_RESOURCE_POOL_EXHAUSTED":              cloud.Capacity,
	"ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS": cloud.Capacity,
	"RESOURCE_POOL_EXHAUSTED":                   cloud.Capacity,
	"STOCKOUT":                                  cloud.Capacity,
	// The machine type is not offered in that zone.
	"ZONE_MACHINE_TYPE_NOT_AVAILABLE": cloud.Capacity,

	"QUOTA_EXCEEDED": cloud.Quota,
	"quotaExceeded":  cloud.Quota,

	"rateLimitExceeded":     cloud.Transient,
	"userRateLimitExceeded": cloud.Transient,
	"RATE_LIMIT_EXCEEDED":   cloud.Transient,
	"backendError":          cloud.Transient,
	"internalError":         cloud.Transient,
	"INTERNAL_ERROR":        cloud.Transient,
	"RESOURCE_NOT_READY":    cloud.Transient, // a delete of an instance still being created
	"resourceNotReady":      cloud.Transient,

	"forbidden":                       cloud.Auth,
	"PERMISSIONS_ERROR":               cloud.Auth,
	"IAM_PERMISSION_DENIED":           cloud.Auth,
	"accessNotConfigured":             cloud.Auth, // the Compute Engine API is not enabled in the project
	"SERVICE_DISABLED":                cloud.Auth,
	"authError":                       cloud.Auth,
	"required":                        cloud.Auth, // "Login Required"
	"insufficientPermissions":         cloud.Auth,
	"ACCESS_TOKEN_SCOPE_INSUFFICIENT": cloud.Auth,

	"RESOURCE_NOT_FOUND":  cloud.Invalid,
	"notFound":            cloud.Invalid,
	"invalid":             cloud.Invalid,
	"INVALID_FIELD_VALUE": cloud.Invalid,
	"badRequest":          cloud.Invalid,
	"conflict":            cloud.Invalid,
	"alreadyExists":       cloud.Invalid,
}

// kindOf answers the driver error kind of an error of a Google client or
// of an operation.
func kindOf(err error) cloud.Kind {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return cloud.Transient
	}
	var ie *identityError
	if errors.As(err, &ie) {
		return ie.kind()
	}
	var de *cloud.Error
	if errors.As(err, &de) {
		return de.Kind
	}
	var oe *opError
	if errors.As(err, &oe) {
		return oe.kind()
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		for _, r := range reasons(err) {
			if k, ok := codeKinds[r]; ok && (k != cloud.Invalid || ge.Code < 500) {
				return k
			}
		}
		switch s := ge.Code; {
		case s == http.StatusUnauthorized || s == http.StatusForbidden:
			return cloud.Auth
		case s == http.StatusTooManyRequests || s >= 500:
			return cloud.Transient
		case s >= 400:
			return cloud.Invalid
		}
	}
	// Timeouts, refused connections, answers that do not parse.
	return cloud.Transient
}

// reasons answers the reasons an HTTP error of Google carries: of its
// errors[] items and of its ErrorInfo detail.
func reasons(err error) []string {
	var out []string
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		for _, e := range ge.Errors {
			if e.Reason != "" {
				out = append(out, e.Reason)
			}
		}
	}
	var ae *apierror.APIError
	if errors.As(err, &ae) && ae.Reason() != "" {
		out = append(out, ae.Reason())
	}
	return out
}

// httpStatus answers the HTTP status of a Google error, or 0.
func httpStatus(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

func isNotFound(err error) bool { return httpStatus(err) == http.StatusNotFound }

func isAlreadyExists(err error) bool {
	if httpStatus(err) != http.StatusConflict {
		return false
	}
	rs := reasons(err)
	return len(rs) == 0 || contains(rs, "alreadyExists") || contains(rs, "ALREADY_EXISTS")
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

// opError is an operation that ended with errors.
type opError struct {
	name   string
	status int32 // its httpErrorStatusCode, or 0
	codes  []string
	msgs   []string
}

func newOpError(op *computepb.Operation) *opError {
	e := &opError{name: op.GetName(), status: op.GetHttpErrorStatusCode()}
	for _, x := range op.GetError().GetErrors() {
		e.codes = append(e.codes, x.GetCode())
		e.msgs = append(e.msgs, clip(x.GetMessage(), 300))
	}
	return e
}

func (e *opError) Error() string {
	parts := make([]string, len(e.codes))
	for i := range e.codes {
		parts[i] = e.codes[i] + ": " + e.msgs[i]
	}
	return fmt.Sprintf("operation %s failed: %s", clip(e.name, 80), strings.Join(parts, "; "))
}

// notFound tells whether the operation failed for want of its resource.
func (e *opError) notFound() bool {
	return e.status == http.StatusNotFound || contains(e.codes, "RESOURCE_NOT_FOUND")
}

func (e *opError) kind() cloud.Kind {
	for _, c := range e.codes {
		if k, ok := codeKinds[c]; ok {
			return k
		}
	}
	s := int(e.status)
	switch {
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		return cloud.Auth
	case s == http.StatusTooManyRequests || s >= 500 || s == 0:
		return cloud.Transient
	}
	return cloud.Invalid
}

// errorCode answers the first Compute Engine code or reason of err, for
// logs and reports, or "".
func errorCode(err error) string {
	var oe *opError
	if errors.As(err, &oe) && len(oe.codes) > 0 {
		return oe.codes[0]
	}
	if rs := reasons(err); len(rs) > 0 {
		return rs[0]
	}
	if s := httpStatus(err); s != 0 {
		return fmt.Sprintf("HTTP %d", s)
	}
	return ""
}

// fail answers err as a driver error of op, its kind from Google's codes.
// Google's errors name the method's resource, the HTTP status and Google's
// own message: none of them holds a request's body or a token.
func fail(op string, err error, format string, args ...any) *cloud.Error {
	return &cloud.Error{Kind: kindOf(err), Op: op, Err: fmt.Errorf(format+": %w", append(args, err)...)}
}

// brief answers a Google error as "HTTP 403 reason: message" for a
// verification's report, which a person reads; anything else as it is.
func brief(err error) string {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		msg := clip(ge.Message, 300)
		if rs := reasons(err); len(rs) > 0 {
			return fmt.Sprintf("HTTP %d %s: %s", ge.Code, rs[0], msg)
		}
		return fmt.Sprintf("HTTP %d: %s", ge.Code, msg)
	}
	return clip(err.Error(), 500)
}

// clip cuts s to n bytes: a hostile answer's message cannot fill a log.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Retries. The REST clients retry reads on HTTP 503 and 504 only, and for
// up to ten minutes when the context has no deadline; an insert or delete
// not at all. The driver's calls use retry instead: HTTP 429 and 5xx,
// of any method (an insert carries a requestId, a delete of a deleted
// instance is a 404, which is done), a few times with a short backoff;
// then the reconciler's next pass retries. Capacity and quota errors are
// never retried in place: another zone or market is the better retry.
const maxRetries = 3

func (d *Driver) retry() gax.CallOption {
	return gax.WithRetry(func() gax.Retryer {
		return &transientRetryer{backoff: gax.Backoff{Initial: d.retryInitial, Max: 16 * d.retryInitial, Multiplier: 2}}
	})
}

type transientRetryer struct {
	backoff gax.Backoff
	n       int
}

func (r *transientRetryer) Retry(err error) (time.Duration, bool) {
	s := httpStatus(err)
	if r.n >= maxRetries || s == 0 || (s != http.StatusTooManyRequests && s < 500) || kindOf(err) != cloud.Transient {
		return 0, false
	}
	r.n++
	return r.backoff.Pause(), true
}
