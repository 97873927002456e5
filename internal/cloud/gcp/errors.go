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

	// An operation's QUOTA_EXCEEDED and an insert's quotaExceeded are the
	// project's quota; on other calls quotaExceeded is the API's rate
	// quota (kindOf).
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
// of an operation. An HTTP error's quotaExceeded is transient here: on a
// read, a wait or a delete it is the API's rate quota, which clears by
// itself; only an insert's own answer (insertKind) and an operation's
// QUOTA_EXCEEDED are the project's resource quota.
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
	var ke *kinded
	if errors.As(err, &ke) {
		return ke.kind
	}
	var oe *opError
	if errors.As(err, &oe) {
		return oe.kind()
	}
	if s := httpStatus(err); s != 0 {
		for _, r := range reasons(err) {
			if k, ok := codeKinds[r]; ok && (k != cloud.Invalid || s < 500) {
				if k == cloud.Quota {
					return cloud.Transient
				}
				return k
			}
		}
		switch {
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

// insertKind is kindOf for the answer of instances.insert itself: there a
// quotaExceeded reason is the project's quota (CPUs, GPUs, addresses), which
// waiting does not clear.
func insertKind(err error) cloud.Kind {
	if httpStatus(err) != 0 {
		for _, r := range reasons(err) {
			if codeKinds[r] == cloud.Quota {
				return cloud.Quota
			}
		}
	}
	return kindOf(err)
}

// reasons answers the reasons an HTTP error of Google carries: of its
// errors[] items and of its ErrorInfo detail.
func reasons(err error) []string {
	var se *googleError
	if errors.As(err, &se) {
		return se.reasons
	}
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
	var se *googleError
	if errors.As(err, &se) {
		return se.code
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

// googleError is a Google API error as the driver reports it: the HTTP
// status, the reasons and Google's message, clipped and scrubbed. The
// client library's error is not kept (nor unwrapped to): its text may hold
// the raw body of the answer (googleapi prints a body it cannot parse),
// which a broken or hostile backend could fill with the request it was
// sent — an insert's startup-script, with the bootstrap token.
type googleError struct {
	code    int
	reasons []string
	message string
}

func (e *googleError) Error() string {
	if len(e.reasons) > 0 {
		return fmt.Sprintf("HTTP %d %s: %s", e.code, e.reasons[0], e.message)
	}
	return fmt.Sprintf("HTTP %d: %s", e.code, e.message)
}

// withheld is the text that replaces a message quoting a secret.
const withheld = "(message withheld: it quotes the request)"

// sanitize answers err fit for an error's text and the logs: a Google
// HTTP error as a googleError, an operation's messages clipped, and any
// message quoting secret (an insert's bootstrap payload; "" = none)
// withheld. Context errors and driver errors are answered as they are.
func sanitize(err error, secret string) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ke *kinded
	if errors.As(err, &ke) {
		return &kinded{kind: ke.kind, err: sanitize(ke.err, secret)}
	}
	var de *cloud.Error
	if errors.As(err, &de) {
		if quotes(err.Error(), secret) {
			return &cloud.Error{Kind: de.Kind, Op: de.Op, Err: errors.New(withheld)}
		}
		return err
	}
	var oe *opError
	if errors.As(err, &oe) {
		c := *oe
		c.msgs = make([]string, len(oe.msgs))
		for i, m := range oe.msgs {
			c.msgs[i] = scrub(m, 300, secret)
		}
		return &c
	}
	if s := httpStatus(err); s != 0 {
		var msg string
		var se *googleError
		var ge *googleapi.Error
		switch {
		case errors.As(err, &se):
			msg = se.message
		case errors.As(err, &ge):
			msg = ge.Message
		}
		return &googleError{code: s, reasons: reasons(err), message: scrub(msg, 300, secret)}
	}
	if quotes(err.Error(), secret) {
		return &cloud.Error{Kind: kindOf(err), Op: "call", Err: errors.New(withheld)}
	}
	return err
}

// scrub answers msg clipped to n bytes, or withheld when it quotes secret.
func scrub(msg string, n int, secret string) string {
	if quotes(msg, secret) {
		return withheld
	}
	return clip(msg, n)
}

// minQuote is the shortest run of word characters taken for a quote of a
// secret: bootstrap tokens are far longer, the words of Google's messages
// mostly shorter.
const minQuote = 8

// quotes tells whether text holds a run of minQuote or more word
// characters (letters, digits, '_') that secret holds too: a message that
// echoes the bootstrap (as it is, JSON-escaped or inside the script) quotes
// its token.
func quotes(text, secret string) bool {
	if secret == "" {
		return false
	}
	word := func(c byte) bool {
		return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	for i := 0; i < len(text); {
		if !word(text[i]) {
			i++
			continue
		}
		j := i
		for j < len(text) && word(text[j]) {
			j++
		}
		if j-i >= minQuote && strings.Contains(secret, text[i:j]) {
			return true
		}
		i = j
	}
	return false
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
// Google's errors are sanitized: the HTTP status, reasons and Google's
// message, clipped (Launch scrubs them of the bootstrap first).
func fail(op string, err error, format string, args ...any) *cloud.Error {
	return &cloud.Error{Kind: kindOf(err), Op: op, Err: fmt.Errorf(format+": %w", append(args, sanitize(err, ""))...)}
}

// brief answers a Google error as "HTTP 403 reason: message" for a
// verification's report, which a person reads; anything else clipped.
func brief(err error) string {
	return clip(sanitize(err, "").Error(), 500)
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

func (d *Driver) retry() gax.CallOption { return d.retryAs(kindOf) }

// retryInsert is retry for instances.insert, whose quotaExceeded is a
// quota error, not retried.
func (d *Driver) retryInsert() gax.CallOption { return d.retryAs(insertKind) }

func (d *Driver) retryAs(kind func(error) cloud.Kind) gax.CallOption {
	return gax.WithRetry(func() gax.Retryer {
		return &transientRetryer{kind: kind, backoff: gax.Backoff{Initial: d.retryInitial, Max: 16 * d.retryInitial, Multiplier: 2}}
	})
}

// transientRetryer retries the HTTP errors kind says are transient: 429,
// 5xx, and the 403 of a rate limit.
type transientRetryer struct {
	kind    func(error) cloud.Kind
	backoff gax.Backoff
	n       int
}

func (r *transientRetryer) Retry(err error) (time.Duration, bool) {
	if r.n >= maxRetries || httpStatus(err) == 0 || r.kind(err) != cloud.Transient {
		return 0, false
	}
	r.n++
	return r.backoff.Pause(), true
}
