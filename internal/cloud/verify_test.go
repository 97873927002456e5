package cloud

import (
	"errors"
	"testing"
)

func TestVerificationResult(t *testing.T) {
	for _, tc := range []struct {
		name       string
		kinds      []Kind
		authFailed bool
		want       Kind // "" means no error
	}{
		{"none", nil, false, ""},
		{"every failure transient", []Kind{Transient, Transient}, false, Transient},
		{"transient even when auth failed", []Kind{Transient}, true, Transient},
		{"one invalid", []Kind{Transient, Invalid}, false, Invalid},
		{"auth failed", []Kind{Auth, Transient}, true, Auth},
		{"auth kind without authFailed", []Kind{Auth}, false, Invalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v Verification
			for _, k := range tc.kinds {
				v.Fail("check", k, "problem %d", 1)
			}
			err := v.Result(tc.authFailed)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Result = %v, want nil", err)
				}
				return
			}
			var ve *VerifyError
			if KindOf(err) != tc.want || !errors.As(err, &ve) || len(ve.Failures) != len(tc.kinds) {
				t.Fatalf("Result = %v, want a %s *VerifyError of %d failures", err, tc.want, len(tc.kinds))
			}
		})
	}
}

func TestVerifyErrorText(t *testing.T) {
	var v Verification
	v.Fail("zones", Invalid, "zone %s does not exist", "z1")
	if got, want := v.Result(false).Error(), "verify: invalid: 1 check failed: zones: zone z1 does not exist"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	v.Fail("image", Transient, "timeout")
	if got, want := (&VerifyError{Failures: v.Failures}).Error(), "2 checks failed: zones: zone z1 does not exist; image: timeout"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
