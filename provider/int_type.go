package provider

import (
	"context"
	"fmt"
	"math"
	"math/big"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/attr/xattr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/defaults"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/numberdefault"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

// Integer attributes. Terraform has one number type; the framework's
// Int64 attributes turn it into an int64 while reading a value, and a
// number that is not a whole int64 (1.5, 1e20) fails there:
// basetypes.Int64Type.ValueFromTerraform returns a Go error, which the
// framework reports as "always an error in the provider" ("Configuration
// Read Error" from fwschemadata's ValueAtPath, "Value Conversion Error"
// from its reflection into a model) on whatever it was reading. For a
// nested attribute that is the enclosing list or object (worker_groups),
// whose conversion converts its elements. Int64Type's own Validate, which
// would name the path, runs only after a successful conversion, and no
// validator runs at all.
//
// So every integer here is a Number attribute of intType. Reading accepts
// any number; the value checks that it is whole, at its own path
// (xattr.ValidateableAttribute, which the framework calls as it reads each
// attribute), and intBetween/intAtLeast/intAny check the range on the exact
// number, 1e20 included. Every configurable integer needs one of those:
// they are what keeps a whole number within int64 (TestIntAttributesBounded).
// The range is not the type's own, because the framework checks a value's
// type on every read, state and plan included, and a state the control
// plane wrote under other limits must still read. The wire type is still
// number, so states written by the former Int64 attributes read unchanged,
// and the documentation still says Number.

// intType is the attribute type of integer attributes: CustomType of a
// schema.NumberAttribute, ElemType/AttrTypes where they nest.
type intType struct{ basetypes.NumberType }

// intValue is a value of intType. A configured value is whole and within
// its attribute's range once validation has passed; values the provider
// makes come from ints.
type intValue struct{ basetypes.NumberValue }

var (
	_ basetypes.NumberTypable     = intType{}
	_ basetypes.NumberValuable    = intValue{}
	_ xattr.ValidateableAttribute = intValue{}
	_ validator.Number            = intRange{}
)

func (intType) Equal(o attr.Type) bool {
	_, ok := o.(intType)
	return ok
}

func (intType) String() string { return "provider.intType" }

func (intType) ValueType(context.Context) attr.Value { return intValue{} }

func (intType) ValueFromNumber(_ context.Context, v basetypes.NumberValue) (basetypes.NumberValuable, diag.Diagnostics) {
	return intValue{v}, nil
}

// ValueFromTerraform accepts every number: what is wrong with one is said
// by ValidateAttribute, with the attribute's path.
func (t intType) ValueFromTerraform(ctx context.Context, in tftypes.Value) (attr.Value, error) {
	v, err := t.NumberType.ValueFromTerraform(ctx, in)
	if err != nil {
		return nil, err
	}
	n, ok := v.(basetypes.NumberValue)
	if !ok {
		return nil, fmt.Errorf("unexpected value type %T from NumberType", v)
	}
	return intValue{n}, nil
}

func intNull() intValue    { return intValue{basetypes.NewNumberNull()} }
func intUnknown() intValue { return intValue{basetypes.NewNumberUnknown()} }

func intOf[T int | int64](n T) intValue {
	return intValue{basetypes.NewNumberValue(new(big.Float).SetInt64(int64(n)))}
}

func (v intValue) Type(context.Context) attr.Type { return intType{} }

func (v intValue) Equal(o attr.Value) bool {
	w, ok := o.(intValue)
	return ok && v.NumberValue.Equal(w.NumberValue)
}

// String is exact, unlike big.Float's ten digits: tokenVersion compares it.
func (v intValue) String() string {
	if v.IsNull() || v.IsUnknown() {
		return v.NumberValue.String()
	}
	return numberText(v.ValueBigFloat())
}

// Int64 answers the value and whether it is known, whole and within int64.
func (v intValue) Int64() (int64, bool) {
	if v.IsNull() || v.IsUnknown() || !v.ValueBigFloat().IsInt() {
		return 0, false
	}
	n, acc := v.ValueBigFloat().Int64()
	if acc != big.Exact {
		return 0, false
	}
	return n, true
}

// ValueInt64 is the value, 0 when null or unknown. Validation keeps
// configured values whole and within int64; past it this would truncate
// or saturate.
func (v intValue) ValueInt64() int64 {
	if v.IsNull() || v.IsUnknown() {
		return 0
	}
	n, _ := v.ValueBigFloat().Int64()
	return n
}

func (v intValue) ValidateAttribute(_ context.Context, req xattr.ValidateAttributeRequest, resp *xattr.ValidateAttributeResponse) {
	if v.IsNull() || v.IsUnknown() || v.ValueBigFloat().IsInt() {
		return
	}
	resp.Diagnostics.AddAttributeError(req.Path, "Invalid Attribute Value",
		fmt.Sprintf("Attribute %s must be a whole number, got: %s", req.Path, numberText(v.ValueBigFloat())))
}

// numberText spells f as a user wrote it: 3, -1, 1.5, 1e+20.
func numberText(f *big.Float) string {
	if n, acc := f.Int64(); acc == big.Exact {
		return fmt.Sprint(n)
	}
	return f.Text('g', -1)
}

// intRange is int64validator.Between and AtLeast for intType attributes,
// with the same descriptions and messages; it sees the exact number, so a
// value past int64 is refused with the attribute's own bounds.
type intRange struct{ min, max int64 }

func intBetween(min, max int64) validator.Number { return intRange{min: min, max: max} }

// intAtLeast bounds above by int64, as the control plane's ints are.
func intAtLeast(min int64) validator.Number { return intRange{min: min, max: math.MaxInt64} }

// intAny is an integer with no range of its own but int64's.
func intAny() validator.Number { return intRange{min: math.MinInt64, max: math.MaxInt64} }

func (v intRange) Description(context.Context) string {
	if v.max == math.MaxInt64 && v.min != math.MinInt64 {
		return fmt.Sprintf("value must be at least %d", v.min)
	}
	return v.between()
}

func (v intRange) between() string {
	return fmt.Sprintf("value must be between %d and %d", v.min, v.max)
}

func (v intRange) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (v intRange) ValidateNumber(ctx context.Context, req validator.NumberRequest, resp *validator.NumberResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	f := req.ConfigValue.ValueBigFloat()
	if !f.IsInt() {
		return // intValue.ValidateAttribute says so
	}
	desc := ""
	switch {
	case f.Cmp(new(big.Float).SetInt64(v.min)) < 0:
		desc = v.Description(ctx)
	case f.Cmp(new(big.Float).SetInt64(v.max)) > 0:
		desc = v.between()
	default:
		return
	}
	resp.Diagnostics.AddAttributeError(req.Path, "Invalid Attribute Value",
		fmt.Sprintf("Attribute %s %s, got: %s", req.Path, desc, numberText(f)))
}

// intDefault is the static default n of an Optional+Computed integer.
func intDefault(n int64) defaults.Number {
	return numberdefault.StaticBigFloat(new(big.Float).SetInt64(n))
}
