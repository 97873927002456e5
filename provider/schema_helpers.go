package provider

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/rayplane/rayplane/internal/api"
)

// The control plane's own rules (api's patterns and limits, which the
// server enforces), checked here so a plan fails before anything is sent.
// The server stays the authority: a rule only it knows still comes back as
// an attribute error through apiErrorDiagnostics.
var (
	namePattern         = api.NamePattern
	instanceTypePattern = api.InstanceTypePattern
	regionPattern       = api.RegionPattern
	roleARNPattern      = api.RoleARNPattern
	wifProviderPattern  = api.WIFProviderPattern
	gcpSAPattern        = api.GCPServiceAccountPattern
	dnsLabelPattern     = api.DNSLabelPattern
)

const (
	maxGroupNodes     = api.MaxGroupNodes
	maxWorkerGroups   = api.MaxWorkerGroups
	maxHeartbeatSec   = api.MaxHeartbeatSec
	maxLostAfter      = api.MaxLostAfter
	maxUpscalingSpeed = api.MaxUpscalingSpeed
	maxCACertLen      = 64 << 10
	maxK8sTokenLen    = 16 << 10
)

func nameValidator() validator.String {
	return stringvalidator.RegexMatches(namePattern, "must be 1-63 characters of letters, digits, '_', '.', '-', starting with a letter or digit")
}

func instanceTypeValidator() validator.String {
	return stringvalidator.RegexMatches(instanceTypePattern, "must be 1-64 characters of letters, digits, '_', '.', '-'")
}

func idValidator(prefix string) validator.String {
	return stringvalidator.RegexMatches(idPattern(prefix), "must be an id like "+prefix+"_…")
}

// idPattern matches the control plane's ids of one kind: prefix_ and 26
// characters of Crockford base32.
func idPattern(prefix string) *regexp.Regexp {
	return regexp.MustCompile(`^` + prefix + `_[0-9a-hjkmnp-tv-z]{26}$`)
}

// checkStringFunc is a validator.String from a function that answers what
// is wrong with a known value, or "".
type checkStringFunc struct {
	desc  string
	check func(string) string
}

func (v checkStringFunc) Description(context.Context) string         { return v.desc }
func (v checkStringFunc) MarkdownDescription(context.Context) string { return v.desc }

func (v checkStringFunc) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if reason := v.check(req.ConfigValue.ValueString()); reason != "" {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid Attribute Value", fmt.Sprintf("Attribute %s %s", req.Path, reason))
	}
}

// noNULValidator refuses a NUL character, which would cut an argument or
// variable short where the runtime reads it as a C string (the control
// plane refuses it too).
func noNULValidator() validator.String {
	return checkStringFunc{desc: "text without a NUL character", check: func(s string) string {
		if strings.ContainsRune(s, 0) {
			return "must not contain a NUL character"
		}
		return ""
	}}
}

func httpsURLValidator() validator.String {
	return checkStringFunc{desc: "an https:// URL", check: func(s string) string {
		if u, err := url.Parse(s); err != nil || u.Scheme != "https" || u.Host == "" {
			return "must be an https:// URL, got: " + s
		}
		return ""
	}}
}

func pemCertValidator() validator.String {
	return checkStringFunc{desc: "a PEM certificate of at most 64 KiB", check: func(s string) string {
		if len(s) > maxCACertLen || !strings.Contains(s, "-----BEGIN CERTIFICATE-----") {
			return "must be a PEM certificate (-----BEGIN CERTIFICATE-----) of at most 64 KiB"
		}
		return ""
	}}
}

func rfc3339Validator() validator.String {
	return checkStringFunc{desc: "an RFC 3339 time", check: func(s string) string {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return fmt.Sprintf("must be an RFC 3339 time like 2030-01-02T15:04:05Z, got: %s", s)
		}
		// time.Parse drops fractional digits past nine: the control plane
		// refuses them rather than store another instant.
		if _, frac, ok := strings.Cut(s, "."); ok && len(frac)-len(strings.TrimLeft(frac, "0123456789")) > 9 {
			return fmt.Sprintf("must have at most 9 fractional digits of a second, got: %s", s)
		}
		if t.Before(api.MinTimestamp) || t.After(api.MaxTimestamp) {
			return fmt.Sprintf("must lie between %s and %s, got: %s",
				api.MinTimestamp.Format(time.RFC3339), api.MaxTimestamp.Format(time.RFC3339), s)
		}
		return ""
	}}
}

// positiveFloat64 checks 0 < v <= max (max 0: no upper bound). The
// float64validator package has no strict lower bound.
type positiveFloat64 struct{ max float64 }

func (v positiveFloat64) Description(context.Context) string {
	if v.max == 0 {
		return "value must be greater than 0"
	}
	return fmt.Sprintf("value must be greater than 0 and at most %g", v.max)
}

func (v positiveFloat64) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (v positiveFloat64) ValidateFloat64(ctx context.Context, req validator.Float64Request, resp *validator.Float64Response) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	f := req.ConfigValue.ValueFloat64()
	if f <= 0 || (v.max != 0 && f > v.max) {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid Attribute Value",
			fmt.Sprintf("Attribute %s %s, got: %g", req.Path, v.Description(ctx), f))
	}
}

// objectAsOptions converts nested objects into structs of types.* fields,
// which hold null and unknown themselves.
var objectAsOptions = basetypes.ObjectAsOptions{}

// Conversions between API values, where "" and nil mean absent, and
// Terraform values, where absent is null.

func stringOrNull(s string) types.String {
	if s == "" {
		return types.StringNull()
	}
	return types.StringValue(s)
}

func intPtrValue(p *int) intValue {
	if p == nil {
		return intNull()
	}
	return intOf(*p)
}

func intPtrFrom(v intValue) *int {
	if v.IsNull() || v.IsUnknown() {
		return nil
	}
	n := int(v.ValueInt64())
	return &n
}

func float64PtrFrom(v types.Float64) *float64 {
	if v.IsNull() || v.IsUnknown() {
		return nil
	}
	f := v.ValueFloat64()
	return &f
}

// renameAPIFields rewrites whole field paths of an invalid-request error
// before apiErrorDiagnostics places them, for API fields whose attribute
// is not the same path with renamed parts (heartbeat.interval_seconds is
// the attribute heartbeat_interval_seconds).
func renameAPIFields(err error, fields map[string]string) error {
	var e *api.Error
	if !errors.As(err, &e) || len(e.Fields) == 0 {
		return err
	}
	out := *e
	out.Fields = make([]api.FieldError, len(e.Fields))
	for i, f := range e.Fields {
		if to, ok := fields[f.Field]; ok {
			f.Field = to
		}
		out.Fields[i] = f
	}
	return &out
}
