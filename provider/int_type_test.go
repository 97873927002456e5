package provider

import (
	"context"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/attr/xattr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	dschema "github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	eschema "github.com/hashicorp/terraform-plugin-framework/ephemeral/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	rschema "github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

// The integer attributes through the framework's server, as Terraform
// calls it: a number that is not a whole int64 within the attribute's range
// is an error on that attribute's own path, nested or not, and never the
// framework's "Value Conversion Error" on the enclosing list.

// Configurations for the tests, as Go values: map for an object, []any for
// a list, string for a number (parsed exactly, so "1e20" is 1e20) or a
// string attribute, unknownValue for an unknown; what is left out is null.
type unknownValue struct{}

func tfValue(t *testing.T, typ tftypes.Type, v any) tftypes.Value {
	t.Helper()
	switch {
	case v == nil:
		return tftypes.NewValue(typ, nil)
	case v == unknownValue{}:
		return tftypes.NewValue(typ, tftypes.UnknownValue)
	}
	switch typ := typ.(type) {
	case tftypes.Object:
		m := v.(map[string]any)
		for k := range m {
			if _, ok := typ.AttributeTypes[k]; !ok {
				t.Fatalf("no attribute %q in %s", k, typ)
			}
		}
		vals := map[string]tftypes.Value{}
		for k, at := range typ.AttributeTypes {
			vals[k] = tfValue(t, at, m[k])
		}
		return tftypes.NewValue(typ, vals)
	case tftypes.List:
		var elems []tftypes.Value
		for _, e := range v.([]any) {
			elems = append(elems, tfValue(t, typ.ElementType, e))
		}
		return tftypes.NewValue(typ, elems)
	case tftypes.Map:
		elems := map[string]tftypes.Value{}
		for k, e := range v.(map[string]any) {
			elems[k] = tfValue(t, typ.ElementType, e)
		}
		return tftypes.NewValue(typ, elems)
	}
	if typ.Is(tftypes.Number) {
		f, _, err := big.ParseFloat(v.(string), 10, 512, big.ToNearestEven)
		if err != nil {
			t.Fatal(err)
		}
		return tftypes.NewValue(typ, f)
	}
	return tftypes.NewValue(typ, v)
}

// diagPath spells a diagnostic's path as the framework's messages do:
// worker_groups[0].min_nodes.
func diagPath(p *tftypes.AttributePath) string {
	var b strings.Builder
	for _, s := range p.Steps() {
		switch s := s.(type) {
		case tftypes.AttributeName:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(string(s))
		case tftypes.ElementKeyInt:
			fmt.Fprintf(&b, "[%d]", int64(s))
		case tftypes.ElementKeyString:
			fmt.Fprintf(&b, "[%q]", string(s))
		}
	}
	return b.String()
}

// testServer is the provider's protocol server and its schemas.
func testServer(t *testing.T) (tfprotov6.ProviderServer, *tfprotov6.GetProviderSchemaResponse) {
	t.Helper()
	srv := providerserver.NewProtocol6(New("test")())()
	schemas, err := srv.GetProviderSchema(context.Background(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return srv, schemas
}

func dynamicValue(t *testing.T, typ tftypes.Type, v any) *tfprotov6.DynamicValue {
	t.Helper()
	dv, err := tfprotov6.NewDynamicValue(typ, tfValue(t, typ, v))
	if err != nil {
		t.Fatal(err)
	}
	return &dv
}

// errorsOf answers "path: detail" of each error, sorted.
func errorsOf(diags []*tfprotov6.Diagnostic) []string {
	var out []string
	for _, d := range diags {
		if d.Severity == tfprotov6.DiagnosticSeverityError {
			out = append(out, diagPath(d.Attribute)+": "+d.Detail)
		}
	}
	slices.Sort(out)
	return out
}

// with is base with the top-level attributes of set replaced.
func with(base map[string]any, set map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range set {
		out[k] = v
	}
	return out
}

var (
	testComputeConfig = map[string]any{"name": "cc", "head_node": map[string]any{"instance_type": "local.small"}}
	testCloud         = map[string]any{"name": "c", "cloud_provider": "local"}
	testK8sCloud      = map[string]any{"name": "k", "cloud_provider": "kubernetes", "storage_location": "s3://bucket-1"}
	testCluster       = map[string]any{"name": "cl", "cloud_id": "cld_00000000000000000000000000",
		"compute_config_id": "cc_00000000000000000000000000"}
)

func testGroups(groups ...map[string]any) map[string]any {
	l := make([]any, len(groups))
	for i, g := range groups {
		l[i] = with(map[string]any{"name": fmt.Sprintf("g%d", i), "instance_type": "local.small", "max_nodes": "2"}, g)
	}
	return map[string]any{"worker_groups": l}
}

func testK8s(version string) map[string]any {
	return map[string]any{"kubernetes": map[string]any{"api_server": "https://k8s:6443", "namespace": "ray",
		"token_wo": "t", "token_wo_version": version, "image": "ray:2",
		"instance_types": []any{map[string]any{"name": "cpu-1", "cpus": "1", "memory_bytes": "1073741824"}}}}
}

func testRequests(count string) map[string]any {
	return map[string]any{"resource_requests": []any{map[string]any{"shape": map[string]any{"CPU": "1"}, "count": count}}}
}

func TestIntAttributeDiagnostics(t *testing.T) {
	const whole = "must be a whole number, got: "
	cases := []struct {
		name     string
		resource string
		config   map[string]any
		want     []string // "path: detail" of every error
	}{
		// Valid configurations: the cases below differ from these only in
		// the integer they name.
		{"compute config valid", "rayplane_compute_config", with(testComputeConfig, testGroups(map[string]any{"min_nodes": "1"})), nil},
		{"cloud valid", "rayplane_cloud", with(testCloud, map[string]any{"heartbeat_interval_seconds": "5",
			"quotas": map[string]any{"max_nodes": "8"}}), nil},
		{"kubernetes cloud valid", "rayplane_cloud", with(testK8sCloud, testK8s("3")), nil},
		{"cluster valid", "rayplane_cluster", with(testCluster, with(testRequests("2"), map[string]any{"compute_config_version": "2"})), nil},
		{"unknown integers", "rayplane_compute_config", with(testComputeConfig, with(testGroups(map[string]any{"min_nodes": unknownValue{}}),
			map[string]any{"max_workers": unknownValue{}})), nil},

		// Nested in a list.
		{"min_nodes 1.5", "rayplane_compute_config", with(testComputeConfig, testGroups(map[string]any{"min_nodes": "1.5"})),
			[]string{"worker_groups[0].min_nodes: Attribute worker_groups[0].min_nodes " + whole + "1.5"}},
		{"max_nodes 1e20", "rayplane_compute_config", with(testComputeConfig, testGroups(map[string]any{"max_nodes": "1e20"})),
			[]string{"worker_groups[0].max_nodes: Attribute worker_groups[0].max_nodes value must be between 0 and 1000, got: 1e+20"}},
		{"min_nodes -1", "rayplane_compute_config", with(testComputeConfig, testGroups(map[string]any{"min_nodes": "-1"})),
			[]string{"worker_groups[0].min_nodes: Attribute worker_groups[0].min_nodes value must be between 0 and 1000, got: -1"}},
		{"every bad group reported", "rayplane_compute_config", with(testComputeConfig, testGroups(
			map[string]any{"min_nodes": "1.5", "max_nodes": "1e20"}, map[string]any{}, map[string]any{"max_nodes": "2.5"})),
			[]string{
				"worker_groups[0].max_nodes: Attribute worker_groups[0].max_nodes value must be between 0 and 1000, got: 1e+20",
				"worker_groups[0].min_nodes: Attribute worker_groups[0].min_nodes " + whole + "1.5",
				"worker_groups[2].max_nodes: Attribute worker_groups[2].max_nodes " + whole + "2.5",
			}},
		{"count 1.5", "rayplane_cluster", with(testCluster, testRequests("1.5")),
			[]string{"resource_requests[0].count: Attribute resource_requests[0].count " + whole + "1.5"}},
		{"count 1e20", "rayplane_cluster", with(testCluster, testRequests("1e20")),
			[]string{"resource_requests[0].count: Attribute resource_requests[0].count value must be between 1 and 10000, got: 1e+20"}},
		{"count -1", "rayplane_cluster", with(testCluster, testRequests("-1")),
			[]string{"resource_requests[0].count: Attribute resource_requests[0].count value must be between 1 and 10000, got: -1"}},

		// Nested in an object.
		{"quotas 1.5", "rayplane_cloud", with(testCloud, map[string]any{"quotas": map[string]any{"max_nodes": "1.5"}}),
			[]string{"quotas.max_nodes: Attribute quotas.max_nodes " + whole + "1.5"}},
		{"quotas 1e20", "rayplane_cloud", with(testCloud, map[string]any{"quotas": map[string]any{"max_vcpus": "1e20"}}),
			[]string{"quotas.max_vcpus: Attribute quotas.max_vcpus value must be between 1 and 9223372036854775807, got: 1e+20"}},
		{"quotas -1", "rayplane_cloud", with(testCloud, map[string]any{"quotas": map[string]any{"max_vcpus": "-1"}}),
			[]string{"quotas.max_vcpus: Attribute quotas.max_vcpus value must be at least 1, got: -1"}},
		{"token version 1.5", "rayplane_cloud", with(testK8sCloud, testK8s("1.5")),
			[]string{"kubernetes.token_wo_version: Attribute kubernetes.token_wo_version " + whole + "1.5"}},
		{"token version 1e20", "rayplane_cloud", with(testK8sCloud, testK8s("1e20")),
			[]string{"kubernetes.token_wo_version: Attribute kubernetes.token_wo_version value must be between " +
				"-9223372036854775808 and 9223372036854775807, got: 1e+20"}},

		// Top level.
		{"max_workers 1.5", "rayplane_compute_config", with(testComputeConfig, map[string]any{"max_workers": "1.5"}),
			[]string{"max_workers: Attribute max_workers " + whole + "1.5"}},
		{"max_workers 1e20", "rayplane_compute_config", with(testComputeConfig, map[string]any{"max_workers": "1e20"}),
			[]string{"max_workers: Attribute max_workers value must be between 0 and 9223372036854775807, got: 1e+20"}},
		{"max_workers -1", "rayplane_compute_config", with(testComputeConfig, map[string]any{"max_workers": "-1"}),
			[]string{"max_workers: Attribute max_workers value must be at least 0, got: -1"}},
		{"max_workers just past int64", "rayplane_compute_config", with(testComputeConfig, map[string]any{"max_workers": "9223372036854775808"}),
			[]string{"max_workers: Attribute max_workers value must be between 0 and 9223372036854775807, got: 9.223372036854775808e+18"}},
		{"worker_idle_timeout_seconds 0.5", "rayplane_compute_config", with(testComputeConfig, map[string]any{"worker_idle_timeout_seconds": "0.5"}),
			[]string{"worker_idle_timeout_seconds: Attribute worker_idle_timeout_seconds " + whole + "0.5"}},
		{"maximum_uptime_seconds 1e20", "rayplane_compute_config", with(testComputeConfig, map[string]any{"maximum_uptime_seconds": "1e20"}),
			[]string{"maximum_uptime_seconds: Attribute maximum_uptime_seconds value must be between 0 and 315360000, got: 1e+20"}},
		{"heartbeat 1.5", "rayplane_cloud", with(testCloud, map[string]any{"heartbeat_interval_seconds": "1.5"}),
			[]string{"heartbeat_interval_seconds: Attribute heartbeat_interval_seconds " + whole + "1.5"}},
		{"heartbeat 1e20", "rayplane_cloud", with(testCloud, map[string]any{"heartbeat_interval_seconds": "1e20"}),
			[]string{"heartbeat_interval_seconds: Attribute heartbeat_interval_seconds value must be between 1 and 300, got: 1e+20"}},
		{"heartbeat -1", "rayplane_cloud", with(testCloud, map[string]any{"heartbeat_lost_after": "-1"}),
			[]string{"heartbeat_lost_after: Attribute heartbeat_lost_after value must be between 1 and 100, got: -1"}},
		{"version 1.5", "rayplane_cluster", with(testCluster, map[string]any{"compute_config_version": "1.5"}),
			[]string{"compute_config_version: Attribute compute_config_version " + whole + "1.5"}},
		{"version 1e20", "rayplane_cluster", with(testCluster, map[string]any{"compute_config_version": "1e20"}),
			[]string{"compute_config_version: Attribute compute_config_version value must be between 1 and 9223372036854775807, got: 1e+20"}},
		{"version -1", "rayplane_cluster", with(testCluster, map[string]any{"compute_config_version": "-1"}),
			[]string{"compute_config_version: Attribute compute_config_version value must be at least 1, got: -1"}},

		// The resource's own checks still run on valid integers, and skip
		// what is not one.
		{"cross-group check", "rayplane_compute_config", with(testComputeConfig, testGroups(map[string]any{"min_nodes": "3"})),
			[]string{"worker_groups[0].max_nodes: Attribute worker_groups[0].max_nodes (2) must be >= worker_groups[0].min_nodes (3)."}},
		{"max_workers check", "rayplane_compute_config", with(testComputeConfig, with(testGroups(map[string]any{"min_nodes": "2"}),
			map[string]any{"max_workers": "1"})),
			[]string{"max_workers: Attribute max_workers (1) must be >= the sum of worker_groups min_nodes (2)."}},
		{"max_workers check skips a bad min_nodes", "rayplane_compute_config", with(testComputeConfig, with(testGroups(map[string]any{"min_nodes": "2.5"}),
			map[string]any{"max_workers": "1"})),
			[]string{"worker_groups[0].min_nodes: Attribute worker_groups[0].min_nodes " + whole + "2.5"}},
	}
	ctx := context.Background()
	srv, schemas := testServer(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			typ := schemas.ResourceSchemas[tc.resource].ValueType()
			resp, err := srv.ValidateResourceConfig(ctx, &tfprotov6.ValidateResourceConfigRequest{
				TypeName: tc.resource, Config: dynamicValue(t, typ, tc.config),
				ClientCapabilities: &tfprotov6.ValidateResourceConfigClientCapabilities{WriteOnlyAttributesAllowed: true},
			})
			if err != nil {
				t.Fatal(err)
			}
			got := errorsOf(resp.Diagnostics)
			if !slices.Equal(got, tc.want) {
				t.Errorf("errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// TestIntAttributePlan: plan reads every integer too (defaults, plan
// modifiers): a bad one is reported on its path there as well, and good
// ones plan as before.
func TestIntAttributePlan(t *testing.T) {
	ctx := context.Background()
	srv, schemas := testServer(t)
	plan := func(t *testing.T, typeName string, prior, config map[string]any) (map[string]tftypes.Value, []string) {
		t.Helper()
		typ := schemas.ResourceSchemas[typeName].ValueType()
		cfg := dynamicValue(t, typ, config)
		// Terraform proposes the configuration, with the prior state's
		// values for computed attributes the configuration leaves null.
		proposed := config
		if prior != nil {
			proposed = with(prior, map[string]any{})
			for k, v := range config {
				proposed[k] = v
			}
		}
		resp, err := srv.PlanResourceChange(ctx, &tfprotov6.PlanResourceChangeRequest{
			TypeName: typeName, Config: cfg, ProposedNewState: dynamicValue(t, typ, proposed),
			PriorState: dynamicValue(t, typ, prior),
		})
		if err != nil {
			t.Fatal(err)
		}
		if errs := errorsOf(resp.Diagnostics); len(errs) > 0 {
			return nil, errs
		}
		v, err := resp.PlannedState.Unmarshal(typ)
		if err != nil {
			t.Fatal(err)
		}
		var attrs map[string]tftypes.Value
		if err := v.As(&attrs); err != nil {
			t.Fatal(err)
		}
		return attrs, nil
	}
	number := func(t *testing.T, v tftypes.Value) string {
		t.Helper()
		if !v.IsKnown() {
			return "unknown"
		}
		var f *big.Float
		if err := v.As(&f); err != nil {
			t.Fatal(err)
		}
		if f == nil {
			return "null"
		}
		return numberText(f)
	}

	t.Run("bad integers", func(t *testing.T) {
		for _, tc := range []struct {
			typeName string
			config   map[string]any
			want     string
		}{
			{"rayplane_compute_config", with(testComputeConfig, testGroups(map[string]any{}, map[string]any{"min_nodes": "1.5"})),
				"worker_groups[1].min_nodes: Attribute worker_groups[1].min_nodes must be a whole number, got: 1.5"},
			{"rayplane_compute_config", with(testComputeConfig, map[string]any{"idle_termination_seconds": "0.25"}),
				"idle_termination_seconds: Attribute idle_termination_seconds must be a whole number, got: 0.25"},
			{"rayplane_cluster", with(testCluster, testRequests("2.5")),
				"resource_requests[0].count: Attribute resource_requests[0].count must be a whole number, got: 2.5"},
		} {
			_, errs := plan(t, tc.typeName, nil, tc.config)
			if !slices.Equal(errs, []string{tc.want}) {
				t.Errorf("plan errors:\n  %s\nwant:\n  %s", strings.Join(errs, "\n  "), tc.want)
			}
		}
	})

	t.Run("defaults", func(t *testing.T) {
		got, errs := plan(t, "rayplane_compute_config", nil, with(testComputeConfig, testGroups(map[string]any{})))
		if errs != nil {
			t.Fatal(errs)
		}
		for name, want := range map[string]string{"worker_idle_timeout_seconds": "300", "idle_termination_seconds": "0",
			"maximum_uptime_seconds": "0", "max_workers": "null", "version": "unknown"} {
			if n := number(t, got[name]); n != want {
				t.Errorf("%s planned %s, want %s", name, n, want)
			}
		}
		var groups []tftypes.Value
		var group map[string]tftypes.Value
		if err := got["worker_groups"].As(&groups); err != nil || len(groups) != 1 || groups[0].As(&group) != nil {
			t.Fatalf("worker_groups planned %v", got["worker_groups"])
		}
		if n := number(t, group["min_nodes"]); n != "0" {
			t.Errorf("min_nodes planned %s, want the default 0", n)
		}
		cloud, errs := plan(t, "rayplane_cloud", nil, testCloud)
		if errs != nil {
			t.Fatal(errs)
		}
		if a, b := number(t, cloud["heartbeat_interval_seconds"]), number(t, cloud["heartbeat_lost_after"]); a != "5" || b != "3" {
			t.Errorf("heartbeat planned %s, %s; want the defaults 5, 3", a, b)
		}
	})

	t.Run("state written by Int64 attributes", func(t *testing.T) {
		// JSON as the provider's Int64 attributes stored it: the wire type
		// was number then as now, so it reads as it was and plans no change.
		raw := `{"id":"cc_00000000000000000000000000","name":"cc","version":4,"head_node":{"instance_type":"local.small"},
			"worker_groups":[{"name":"g0","instance_type":"local.small","min_nodes":1,"max_nodes":2,"market":"on_demand"}],
			"max_workers":9007199254740993,"worker_idle_timeout_seconds":300,"idle_termination_seconds":0,
			"maximum_uptime_seconds":0,"upscaling_speed":1,"max_hourly_cost":null}`
		prior := with(testComputeConfig, with(testGroups(map[string]any{"min_nodes": "1", "market": "on_demand"}), map[string]any{
			"id": "cc_00000000000000000000000000", "version": "4", "max_workers": "9007199254740993",
			"worker_idle_timeout_seconds": "300", "idle_termination_seconds": "0", "maximum_uptime_seconds": "0", "upscaling_speed": "1"}))
		typ := schemas.ResourceSchemas["rayplane_compute_config"].ValueType()
		up, err := srv.UpgradeResourceState(ctx, &tfprotov6.UpgradeResourceStateRequest{TypeName: "rayplane_compute_config",
			RawState: &tfprotov6.RawState{JSON: []byte(raw)}})
		if err != nil || len(up.Diagnostics) > 0 {
			t.Fatalf("upgrade: %v %v", err, errorsOf(up.Diagnostics))
		}
		upgraded, err := up.UpgradedState.Unmarshal(typ)
		if err != nil {
			t.Fatal(err)
		}
		if want := tfValue(t, typ, prior); !upgraded.Equal(want) {
			t.Fatalf("state read as %v, want %v", upgraded, want)
		}
		config := with(testComputeConfig, with(testGroups(map[string]any{"min_nodes": "1"}), map[string]any{"max_workers": "9007199254740993"}))
		got, errs := plan(t, "rayplane_compute_config", prior, config)
		if errs != nil {
			t.Fatal(errs)
		}
		if planned := tftypes.NewValue(typ, got); !planned.Equal(upgraded) {
			t.Errorf("plan changes the state:\n%v\nwant\n%v", planned, upgraded)
		}
	})

	t.Run("pinned version", func(t *testing.T) {
		prior := with(testCluster, map[string]any{"id": "cls_00000000000000000000000000", "compute_config_version": "3",
			"desired_state": "running", "status": "RUNNING", "resource_requests": []any{}, "nodes_running": "1", "nodes_total": "1",
			"hourly_cost": "0"})
		config := with(testCluster, map[string]any{"name": "renamed"})
		got, errs := plan(t, "rayplane_cluster", prior, config)
		if errs != nil {
			t.Fatal(errs)
		}
		if n := number(t, got["compute_config_version"]); n != "3" {
			t.Errorf("compute_config_version planned %s, want the pinned 3", n)
		}
		// Another compute config: its latest version, known after apply.
		got, errs = plan(t, "rayplane_cluster", prior, with(config, map[string]any{"compute_config_id": "cc_11111111111111111111111111"}))
		if errs != nil {
			t.Fatal(errs)
		}
		if n := number(t, got["compute_config_version"]); n != "unknown" {
			t.Errorf("compute_config_version planned %s for another config, want unknown", n)
		}
	})
}

func TestIntValue(t *testing.T) {
	parse := func(s string) intValue {
		f, _, err := big.ParseFloat(s, 10, 512, big.ToNearestEven)
		if err != nil {
			t.Fatal(err)
		}
		return intValue{basetypes.NewNumberValue(f)}
	}
	for _, tc := range []struct {
		name    string
		v       intValue
		text    string
		n       int64
		fits64  bool   // Int64's ok
		invalid string // ValidateAttribute's error
	}{
		{"small", intOf(3), "3", 3, true, ""},
		{"negative", intOf(-1), "-1", -1, true, ""},
		{"past ten digits", intOf(12345678901), "12345678901", 12345678901, true, ""},
		{"max", parse("9223372036854775807"), "9223372036854775807", 1<<63 - 1, true, ""},
		// Whole: the attribute's range validator refuses it.
		{"past int64", parse("9223372036854775808"), "9.223372036854775808e+18", 0, false, ""},
		{"1e20", parse("1e20"), "1e+20", 0, false, ""},
		{"fraction", parse("1.5"), "1.5", 0, false, "Attribute n must be a whole number, got: 1.5"},
		{"negative fraction", parse("-0.001"), "-0.001", 0, false, "Attribute n must be a whole number, got: -0.001"},
		{"null", intNull(), "<null>", 0, false, ""},
		{"unknown", intUnknown(), "<unknown>", 0, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.v.String(); got != tc.text {
				t.Errorf("String() = %q, want %q", got, tc.text)
			}
			n, ok := tc.v.Int64()
			if n != tc.n || ok != tc.fits64 {
				t.Errorf("Int64() = %d, %v; want %d, %v", n, ok, tc.n, tc.fits64)
			}
			var resp xattr.ValidateAttributeResponse
			tc.v.ValidateAttribute(context.Background(), xattr.ValidateAttributeRequest{Path: path.Root("n")}, &resp)
			got := ""
			for _, d := range resp.Diagnostics {
				got += d.Detail()
			}
			if got != tc.invalid {
				t.Errorf("ValidateAttribute: %q, want %q", got, tc.invalid)
			}
		})
	}
	// token_wo_version compares versions by their text.
	if intOf(12345678901).String() == intOf(12345678902).String() {
		t.Error("String() is not exact")
	}
	// Values the provider makes are of the schema's type.
	if !intOf(1).Type(context.Background()).Equal(intType{}) || intOf(1).Equal(basetypes.NewNumberValue(big.NewFloat(1))) {
		t.Error("intValue's type or equality")
	}
}

// TestIntAttributesBounded: no attribute is an Int64 (whose conversion
// errors this type replaces), and every configurable integer has a range
// validator, which is what keeps it within int64.
func TestIntAttributesBounded(t *testing.T) {
	ctx := context.Background()
	p := New("test")()
	check := func(t *testing.T, where string, a any) {
		t.Helper()
		typed, ok := a.(interface {
			GetType() attr.Type
			IsRequired() bool
			IsOptional() bool
		})
		if !ok {
			t.Fatalf("%s: attribute %T", where, a)
		}
		if hasInt64(typed.GetType()) {
			t.Errorf("%s is an Int64 attribute: make it a NumberAttribute with CustomType intType{}", where)
		}
		var validators []any
		switch a := a.(type) {
		case rschema.NumberAttribute:
			for _, v := range a.Validators {
				validators = append(validators, v)
			}
		case dschema.NumberAttribute:
			for _, v := range a.Validators {
				validators = append(validators, v)
			}
		case eschema.NumberAttribute:
			for _, v := range a.Validators {
				validators = append(validators, v)
			}
		default:
			return
		}
		if !typed.GetType().Equal(intType{}) || !(typed.IsRequired() || typed.IsOptional()) {
			return
		}
		if !slices.ContainsFunc(validators, func(v any) bool { _, ok := v.(intRange); return ok }) {
			t.Errorf("%s: a configurable integer needs intBetween, intAtLeast or intAny", where)
		}
	}
	for _, newResource := range p.Resources(ctx) {
		r := newResource()
		var meta resource.MetadataResponse
		r.Metadata(ctx, resource.MetadataRequest{ProviderTypeName: "rayplane"}, &meta)
		var resp resource.SchemaResponse
		r.Schema(ctx, resource.SchemaRequest{}, &resp)
		walkResourceAttributes(meta.TypeName, resp.Schema.Attributes, func(where string, a rschema.Attribute) { check(t, where, a) })
	}
	for _, newDataSource := range p.DataSources(ctx) {
		d := newDataSource()
		var meta datasource.MetadataResponse
		d.Metadata(ctx, datasource.MetadataRequest{ProviderTypeName: "rayplane"}, &meta)
		var resp datasource.SchemaResponse
		d.Schema(ctx, datasource.SchemaRequest{}, &resp)
		walkDataSourceAttributes("data."+meta.TypeName, resp.Schema.Attributes, func(where string, a dschema.Attribute) { check(t, where, a) })
	}
	for _, newEphemeral := range p.(provider.ProviderWithEphemeralResources).EphemeralResources(ctx) {
		e := newEphemeral()
		var meta ephemeral.MetadataResponse
		e.Metadata(ctx, ephemeral.MetadataRequest{ProviderTypeName: "rayplane"}, &meta)
		var resp ephemeral.SchemaResponse
		e.Schema(ctx, ephemeral.SchemaRequest{}, &resp)
		for name, a := range resp.Schema.Attributes { // no nested attributes yet
			check(t, "ephemeral."+meta.TypeName+"."+name, a)
		}
	}
}

func walkResourceAttributes(where string, attrs map[string]rschema.Attribute, f func(string, rschema.Attribute)) {
	for name, a := range attrs {
		at := where + "." + name
		f(at, a)
		switch a := a.(type) {
		case rschema.SingleNestedAttribute:
			walkResourceAttributes(at, a.Attributes, f)
		case rschema.ListNestedAttribute:
			walkResourceAttributes(at+"[*]", a.NestedObject.Attributes, f)
		case rschema.SetNestedAttribute:
			walkResourceAttributes(at+"[*]", a.NestedObject.Attributes, f)
		case rschema.MapNestedAttribute:
			walkResourceAttributes(at+"[*]", a.NestedObject.Attributes, f)
		}
	}
}

func walkDataSourceAttributes(where string, attrs map[string]dschema.Attribute, f func(string, dschema.Attribute)) {
	for name, a := range attrs {
		at := where + "." + name
		f(at, a)
		switch a := a.(type) {
		case dschema.SingleNestedAttribute:
			walkDataSourceAttributes(at, a.Attributes, f)
		case dschema.ListNestedAttribute:
			walkDataSourceAttributes(at+"[*]", a.NestedObject.Attributes, f)
		case dschema.SetNestedAttribute:
			walkDataSourceAttributes(at+"[*]", a.NestedObject.Attributes, f)
		case dschema.MapNestedAttribute:
			walkDataSourceAttributes(at+"[*]", a.NestedObject.Attributes, f)
		}
	}
}

// hasInt64 reports whether typ is or holds the framework's Int64 type.
func hasInt64(typ attr.Type) bool {
	switch typ := typ.(type) {
	case basetypes.Int64Typable:
		return true
	case attr.TypeWithElementType:
		return hasInt64(typ.ElementType())
	case attr.TypeWithAttributeTypes:
		for _, at := range typ.AttributeTypes() {
			if hasInt64(at) {
				return true
			}
		}
	}
	return false
}
