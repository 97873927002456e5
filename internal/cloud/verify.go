package cloud

import (
	"fmt"
	"strings"
)

// Failure is one failed check of a driver's verification.
type Failure struct {
	Check   string // one of the driver's Check* names
	Problem string
	Kind    Kind // Transient when the check may pass if tried again
}

// VerifyError lists every failed check of one verification. It is the Err
// of the *Error a driver's Verify answers.
type VerifyError struct{ Failures []Failure }

func (e *VerifyError) Error() string {
	parts := make([]string, len(e.Failures))
	for i, f := range e.Failures {
		parts[i] = f.Check + ": " + f.Problem
	}
	n := "1 check"
	if len(e.Failures) > 1 {
		n = fmt.Sprintf("%d checks", len(e.Failures))
	}
	return n + " failed: " + strings.Join(parts, "; ")
}

// Verification records the failed checks of one verification, so a
// driver's Verify runs every check it can and names every failure at once.
type Verification struct{ Failures []Failure }

// Fail records that check failed, with a problem a person reads.
func (v *Verification) Fail(check string, kind Kind, format string, args ...any) {
	v.Failures = append(v.Failures, Failure{Check: check, Problem: fmt.Sprintf(format, args...), Kind: kind})
}

// Kind answers the kind of the verification's error: Transient when every
// failure was (a retry may pass); else Auth when authFailed (the driver's
// credentials did not work, so the checks that need them did not run);
// else Invalid.
func (v *Verification) Kind(authFailed bool) Kind {
	kind := Transient
	for _, f := range v.Failures {
		if f.Kind != Transient {
			kind = Invalid
		}
	}
	if authFailed && kind != Transient {
		kind = Auth
	}
	return kind
}

// Result answers nil when no check failed, else the *Error of
// v.Kind(authFailed) whose Err is a *VerifyError.
func (v *Verification) Result(authFailed bool) error {
	if len(v.Failures) == 0 {
		return nil
	}
	return &Error{Kind: v.Kind(authFailed), Op: "verify", Err: &VerifyError{Failures: v.Failures}}
}
