package api

import (
	"errors"
	"fmt"
	"strings"
)

// Code classifies an error. Each code maps to exactly one HTTP status, in
// one function of service/httpapi; the provider maps codes to diagnostics
// in one place too.
type Code string

const (
	CodeInvalid          Code = "invalid"
	CodeUnauthorized     Code = "unauthorized"
	CodeForbidden        Code = "forbidden"
	CodeNotFound         Code = "not_found"
	CodeConflict         Code = "conflict"
	CodeMethodNotAllowed Code = "method_not_allowed"
	CodeTooLarge         Code = "too_large"
	CodeUnsupportedMedia Code = "unsupported_media_type"
	CodeUnavailable      Code = "unavailable"
	CodeInternal         Code = "internal"
)

// FieldError names one bad field of a request, with a JSON path such as
// "worker_groups[1].max_nodes".
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Error is the one typed error of rayplane. Message is safe to show to the
// caller: internal details are logged by the server, never put here.
type Error struct {
	Code    Code         `json:"code"`
	Message string       `json:"message"`
	Fields  []FieldError `json:"fields,omitempty"`
}

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Error *Error `json:"error"`
}

func (e *Error) Error() string {
	if len(e.Fields) == 0 {
		return fmt.Sprintf("%s: %s", e.Code, e.Message)
	}
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Reason
	}
	return fmt.Sprintf("%s: %s (%s)", e.Code, e.Message, strings.Join(parts, "; "))
}

// Errorf builds an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// NotFound is the answer for a missing object, and equally for an object of
// another organization: callers cannot tell the two apart.
func NotFound(kind, id string) *Error {
	return Errorf(CodeNotFound, "%s %q not found", kind, id)
}

// ErrorCode returns the code of err if it is (or wraps) an *Error, and
// CodeInternal otherwise.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// IsCode reports whether err is (or wraps) an *Error with the given code.
func IsCode(err error, code Code) bool {
	return err != nil && ErrorCode(err) == code
}

// FieldErrors collects field problems during validation.
type FieldErrors []FieldError

// Add records that field is bad for reason.
func (fe *FieldErrors) Add(field, format string, args ...any) {
	*fe = append(*fe, FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// MaxFieldErrors bounds the fields one error answer lists: a body with
// thousands of bad entries gets a short answer that says how many.
const MaxFieldErrors = 20

// Err returns nil when nothing was recorded, else an invalid *Error naming
// the bad fields (the first MaxFieldErrors of them).
func (fe FieldErrors) Err() error {
	if len(fe) == 0 {
		return nil
	}
	msg := "invalid field " + fe[0].Field + ": " + fe[0].Reason
	if len(fe) > 1 {
		msg = fmt.Sprintf("%d invalid fields, first %s: %s", len(fe), fe[0].Field, fe[0].Reason)
	}
	if len(fe) > MaxFieldErrors {
		msg += fmt.Sprintf(" (the first %d are listed)", MaxFieldErrors)
		fe = fe[:MaxFieldErrors]
	}
	return &Error{Code: CodeInvalid, Message: msg, Fields: fe}
}
