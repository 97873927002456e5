package aws

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/rayplane/rayplane/internal/cloud"
)

// codeKinds maps AWS error codes to what the reconciler should do. Codes
// not here are classified by kindOf's rules (Invalid* is invalid, an HTTP
// 5xx is transient).
var codeKinds = map[string]cloud.Kind{
	// No machine of that kind now, here: another subnet, market or later.
	"InsufficientInstanceCapacity":      cloud.Capacity,
	"InsufficientCapacity":              cloud.Capacity,
	"InsufficientHostCapacity":          cloud.Capacity,
	"SpotMaxPriceTooLow":                cloud.Capacity,
	"Unsupported":                       cloud.Capacity, // the type is not offered in that subnet's zone
	"InsufficientFreeAddressesInSubnet": cloud.Capacity, // the subnet is full; another may not be

	"InstanceLimitExceeded":        cloud.Quota,
	"VcpuLimitExceeded":            cloud.Quota,
	"MaxSpotInstanceCountExceeded": cloud.Quota,
	"ResourceLimitExceeded":        cloud.Quota,

	"AuthFailure":                 cloud.Auth,
	"UnauthorizedOperation":       cloud.Auth,
	"AccessDenied":                cloud.Auth,
	"AccessDeniedException":       cloud.Auth,
	"InvalidClientTokenId":        cloud.Auth,
	"ExpiredToken":                cloud.Auth,
	"ExpiredTokenException":       cloud.Auth,
	"OptInRequired":               cloud.Auth,
	"SignatureDoesNotMatch":       cloud.Auth,
	"UnrecognizedClientException": cloud.Auth,
	"Forbidden":                   cloud.Auth, // S3 HEAD requests have no body: 403 is all there is

	"RequestLimitExceeded": cloud.Transient,
	"Throttling":           cloud.Transient,
	"ThrottlingException":  cloud.Transient,
	"SlowDown":             cloud.Transient,
	"ServiceUnavailable":   cloud.Transient,
	"Unavailable":          cloud.Transient,
	"InternalError":        cloud.Transient,
	"InternalFailure":      cloud.Transient,
	"RequestTimeout":       cloud.Transient,
	// The same ClientToken with other parameters: a retried Launch whose
	// first RunInstances went through but is not yet visible to
	// DescribeInstances (eventual consistency) and whose user data changed.
	// The next pass finds the instance by its tag.
	"IdempotentParameterMismatch": cloud.Transient,

	"MissingParameter":     cloud.Invalid,
	"UnknownParameter":     cloud.Invalid,
	"ValidationError":      cloud.Invalid,
	"UnsupportedOperation": cloud.Invalid,
	"NoSuchEntity":         cloud.Invalid,
	"NoSuchBucket":         cloud.Invalid,
	"NotFound":             cloud.Invalid,
}

// kindOf answers the driver error kind of an error of the SDK.
func kindOf(err error) cloud.Kind {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return cloud.Transient
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code := ae.ErrorCode()
		if k, ok := codeKinds[code]; ok {
			return k
		}
		if strings.HasPrefix(code, "AuthFailure.") {
			// AuthFailure.ServiceLinkedRoleCreationNotPermitted: a first
			// spot launch whose caller may not let EC2 create the Spot
			// service-linked role.
			return cloud.Auth
		}
		if strings.HasPrefix(code, "Invalid") || strings.HasSuffix(code, ".Malformed") || strings.HasSuffix(code, ".NotFound") {
			return cloud.Invalid
		}
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		switch s := re.HTTPStatusCode(); {
		case s >= 500 || s == 429:
			return cloud.Transient
		case s == 401 || s == 403:
			return cloud.Auth
		case s >= 400:
			return cloud.Invalid
		}
	}
	// Timeouts, refused connections, the retryer giving up on throttling.
	return cloud.Transient
}

// errorCode answers the AWS error code of err, or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// fail answers err as a driver error of op, its kind from the AWS error
// code. The SDK's message names the operation, the HTTP status, the
// request id and AWS's own message: none of them holds a request's body or
// a credential.
func fail(op string, err error, format string, args ...any) *cloud.Error {
	return &cloud.Error{Kind: kindOf(err), Op: op, Err: fmt.Errorf(format+": %w", append(args, err)...)}
}

// brief answers an AWS error as "Code: message" for a verification's
// report, which a person reads; anything else as it is.
func brief(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if msg := ae.ErrorMessage(); msg != "" {
			return ae.ErrorCode() + ": " + msg
		}
		return ae.ErrorCode()
	}
	return err.Error()
}
