package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rayplane/rayplane/internal/cloud"
)

// rbacDenied matches the API server's message for a request RBAC refused:
// `User "x" cannot create resource "pods" in API group "" in the namespace
// "y"`. Other 403s come from admission: a ResourceQuota ("exceeded quota"),
// a LimitRange, Pod Security, a namespace being deleted.
var rbacDenied = regexp.MustCompile(`cannot [a-z]+ resource "`)

// kindOf answers the driver error kind of an error of the API server or of
// the way to it.
func kindOf(err error) cloud.Kind {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return cloud.Transient
	}
	var typed *cloud.Error
	if errors.As(err, &typed) {
		return typed.Kind
	}
	// The cloud's api_server leads where the driver does not go: only the
	// operator (allowed networks) or the cloud's owner can change that.
	if errors.As(err, new(*AddressNotAllowedError)) || errors.As(err, new(*RedirectError)) {
		return cloud.Invalid
	}
	switch {
	case apierrors.IsUnauthorized(err):
		return cloud.Auth
	case apierrors.IsForbidden(err):
		msg := err.Error()
		switch {
		case strings.Contains(msg, "exceeded quota"):
			return cloud.Quota
		case rbacDenied.MatchString(msg):
			return cloud.Auth
		}
		return cloud.Invalid
	case apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err),
		apierrors.IsInternalError(err), apierrors.IsServiceUnavailable(err), apierrors.IsUnexpectedServerError(err),
		// Optimistic concurrency lost, or a list's continue token expired:
		// the next pass reads again.
		apierrors.IsConflict(err), apierrors.IsResourceExpired(err), apierrors.IsGone(err):
		return cloud.Transient
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsNotFound(err),
		apierrors.IsRequestEntityTooLargeError(err), apierrors.IsMethodNotSupported(err),
		apierrors.IsNotAcceptable(err), apierrors.IsUnsupportedMediaType(err):
		return cloud.Invalid
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		switch code := status.Status().Code; {
		case code >= 500:
			return cloud.Transient
		case code >= 400:
			return cloud.Invalid
		}
	}
	// Refused connections, TLS handshakes timing out, DNS.
	return cloud.Transient
}

// fail answers err as a driver error of op, its kind from the API server's
// status, its text as clean makes it. The API server's messages name the
// object, the verb and the user; client-go's transport errors name the URL.
// Neither holds a request body or a token.
func (d *Driver) fail(op string, err error, format string, args ...any) *cloud.Error {
	err = d.clean(err)
	return &cloud.Error{Kind: kindOf(err), Op: op, Err: fmt.Errorf(format+": %w", append(args, err)...)}
}

// brief answers an error for a verification's report: the API server's
// message, or the error, as clean makes it and at most maxMessage long.
func (d *Driver) brief(err error) string {
	err = d.clean(err)
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Message != "" {
		return boundedMessage(status.Status().Message)
	}
	return boundedMessage(err.Error())
}

// clean answers err in words that can reach the tenant (a cluster's or a
// cloud's status_reason): the API server is theirs, and it may be some
// other service answering for it, so what it answered is quoted only when
// it is a metav1.Status, and then bounded.
//
//   - A status client-go made up from an answer that was not a Status (an
//     HTML page, a JSON document of another service, text; client-go
//     quotes up to 2 KB of it in 403s, 406s, 415s and 5xx) becomes "the
//     API server answered HTTP <code>", with the code and reason kept for
//     kindOf. The body goes to the debug log, bounded.
//   - A Status keeps its reason and code, its message bounded.
//   - The transport's refusals, the driver's own errors, context errors,
//     and errors on the way to the server (url.Error: the URL is the
//     cloud's, the rest is the dialer's or TLS's) are kept, bounded.
//   - Anything else (a 2xx answer that does not decode: the decoders quote
//     it) becomes "the API server's answer could not be decoded".
func (d *Driver) clean(err error) error {
	if err == nil {
		return nil
	}
	var typed *cloud.Error
	if errors.As(err, &typed) || errors.As(err, new(driverError)) || isTransportRefusal(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return bounded(err)
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		s := status.Status()
		if unstructured(s) {
			d.log.Debug("the API server answered something that is not a Status", "code", s.Code, "body", boundedMessage(unstructuredBody(s)))
			return &apierrors.StatusError{ErrStatus: metav1.Status{
				Status: metav1.StatusFailure, Code: s.Code, Reason: s.Reason,
				Message: fmt.Sprintf("the API server answered HTTP %d", s.Code),
			}}
		}
		s.Message = boundedMessage(s.Message)
		s.Details = nil // causes quote fields; kindOf needs the reason and code
		return &apierrors.StatusError{ErrStatus: s}
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return bounded(err)
	}
	d.log.Debug("the API server's answer could not be decoded", logErr, boundedMessage(err.Error()))
	return driverError{errors.New("the API server's answer could not be decoded")}
}

// driverError is an error of the driver's own words, which clean keeps.
type driverError struct{ err error }

func (e driverError) Error() string { return e.err.Error() }
func (e driverError) Unwrap() error { return e.err }

// unstructured reports whether s is client-go's rendering of an answer
// that was not a Status (apierrors.NewGenericServerResponse).
func unstructured(s metav1.Status) bool {
	if s.Details == nil {
		return false
	}
	for _, c := range s.Details.Causes {
		if c.Type == metav1.CauseTypeUnexpectedServerResponse {
			return true
		}
	}
	return false
}

func unstructuredBody(s metav1.Status) string {
	for _, c := range s.Details.Causes {
		if c.Type == metav1.CauseTypeUnexpectedServerResponse {
			return c.Message
		}
	}
	return ""
}

// boundedError is an error whose text is cut to maxMessage, still
// unwrapping to the error (for kindOf and errors.As).
type boundedError struct{ err error }

func (e boundedError) Error() string { return boundedMessage(e.err.Error()) }
func (e boundedError) Unwrap() error { return e.err }

func bounded(err error) error {
	if len(err.Error()) <= maxMessage {
		return err
	}
	return boundedError{err}
}
