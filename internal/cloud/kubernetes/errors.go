package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

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
// status. The API server's messages name the object, the verb and the
// user; client-go's transport errors name the URL. Neither holds a request
// body or a token.
func fail(op string, err error, format string, args ...any) *cloud.Error {
	return &cloud.Error{Kind: kindOf(err), Op: op, Err: fmt.Errorf(format+": %w", append(args, err)...)}
}

// brief answers an error for a verification's report: the API server's
// message, or the error.
func brief(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Message != "" {
		return status.Status().Message
	}
	return err.Error()
}
