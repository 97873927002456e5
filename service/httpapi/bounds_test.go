package httpapi

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// rawField answers the raw JSON of one top-level field of an answer.
func rawField(t *testing.T, r response, name string) string {
	t.Helper()
	var m map[string]json.RawMessage
	r.decode(t, &m)
	return string(m[name])
}

// TestMaximumDurationsRoundTrip: a compute config at every documented
// maximum is accepted and reads back exactly as sent; one past any of them
// is a 400 naming the field.
func TestMaximumDurationsRoundTrip(t *testing.T) {
	e := newTestEnv(t)
	body := func(idle, term, up int) string {
		return fmt.Sprintf(`{"name":"long","head_node":{"instance_type":"local.small"},"worker_idle_timeout_seconds":%d,"idle_termination_seconds":%d,"maximum_uptime_seconds":%d}`,
			idle, term, up)
	}
	var cc api.ComputeConfig
	e.must(201, "POST", "/v1/compute-configs", e.admin, body(api.MaxWorkerIdleTimeoutSec, api.MaxIdleTerminationSec, api.MaxUptimeSec)).decode(t, &cc)
	r := e.must(200, "GET", "/v1/compute-configs/"+cc.ID, e.admin, "")
	for name, want := range map[string]int{
		"worker_idle_timeout_seconds": api.MaxWorkerIdleTimeoutSec,
		"idle_termination_seconds":    api.MaxIdleTerminationSec,
		"maximum_uptime_seconds":      api.MaxUptimeSec,
	} {
		if got := rawField(t, r, name); got != fmt.Sprint(want) {
			t.Errorf("%s read back as %s, want %d", name, got, want)
		}
	}

	var cloud api.Cloud
	e.must(201, "POST", "/v1/clouds", e.admin, fmt.Sprintf(`{"name":"slow","provider":"local","heartbeat":{"interval_seconds":%d,"lost_after_intervals":%d}}`,
		api.MaxHeartbeatSec, api.MaxLostAfter)).decode(t, &cloud)
	var got api.Cloud
	e.must(200, "GET", "/v1/clouds/"+cloud.ID, e.admin, "").decode(t, &got)
	if got.Heartbeat.IntervalSeconds != api.MaxHeartbeatSec || got.Heartbeat.LostAfter != api.MaxLostAfter {
		t.Errorf("heartbeat read back as %+v", got.Heartbeat)
	}

	e.expectRefused(t, []badBody{
		{"idle timeout past its maximum", "POST", "/v1/compute-configs", body(api.MaxWorkerIdleTimeoutSec+1, 0, 0),
			"worker_idle_timeout_seconds", fmt.Sprint("between 0 and ", api.MaxWorkerIdleTimeoutSec)},
		{"idle termination past its maximum", "POST", "/v1/compute-configs", body(0, api.MaxIdleTerminationSec+1, 0),
			"idle_termination_seconds", fmt.Sprint("between 0 and ", api.MaxIdleTerminationSec)},
		{"uptime past its maximum", "POST", "/v1/compute-configs", body(0, 0, api.MaxUptimeSec+1),
			"maximum_uptime_seconds", fmt.Sprint("between 0 and ", api.MaxUptimeSec)},
		{"uptime that overflows a Duration", "PUT", "/v1/compute-configs/" + cc.ID, body(0, 0, 9223372036),
			"maximum_uptime_seconds", "between 0 and"},
		{"heartbeat past its maximum", "POST", "/v1/clouds", `{"name":"s","provider":"local","heartbeat":{"interval_seconds":301}}`,
			"heartbeat.interval_seconds", "between 1 and 300"},
		{"inline dry-run spec past a maximum", "POST", "/v1/clusters/dry-run",
			fmt.Sprintf(`{"cluster":{"name":"c","cloud_id":%q,"compute_config_id":%q},"compute_config":{"head_node":{"instance_type":"local.small"},"maximum_uptime_seconds":%d}}`,
				cloud.ID, cc.ID, api.MaxUptimeSec+1),
			"compute_config.maximum_uptime_seconds", "between 0 and"},
	})
}

// TestTokenExpiryBounds: expires_at is kept to the nanosecond up to
// api.MaxTimestamp and reads back exactly as accepted; past it, in the
// past, with more than nine fractional digits or not RFC 3339 it is a 400
// naming expires_at.
func TestTokenExpiryBounds(t *testing.T) {
	e := newTestEnv(t)
	for _, c := range []struct{ sent, want string }{
		{api.MaxTimestamp.Format(time.RFC3339Nano), `"2200-01-01T00:00:00Z"`},
		{"2199-12-31T23:59:59.999999999Z", `"2199-12-31T23:59:59.999999999Z"`},
		{"2200-01-01T01:59:59.123456789+02:00", `"2199-12-31T23:59:59.123456789Z"`}, // answered in UTC, create and read alike
	} {
		r := e.must(201, "POST", "/v1/tokens", e.admin, fmt.Sprintf(`{"name":"far","role":"reader","expires_at":%q}`, c.sent))
		if got := rawField(t, r, "expires_at"); got != c.want {
			t.Errorf("created with %s: answered %s, want %s", c.sent, got, c.want)
		}
		var tok api.APIToken
		r.decode(t, &tok)
		if got := rawField(t, e.must(200, "GET", "/v1/tokens/"+tok.ID, e.admin, ""), "expires_at"); got != c.want {
			t.Errorf("created with %s: read back %s, want %s", c.sent, got, c.want)
		}
	}
	token := func(at string) string { return fmt.Sprintf(`{"name":"t","role":"reader","expires_at":%q}`, at) }
	e.expectRefused(t, []badBody{
		{"a nanosecond past the maximum", "POST", "/v1/tokens", token("2200-01-01T00:00:00.000000001Z"), "expires_at", "must be between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z"},
		{"past the maximum by its zone", "POST", "/v1/tokens", token("2200-01-01T00:00:00-00:01"), "expires_at", "must be between"},
		{"past int64 nanoseconds", "POST", "/v1/tokens", token("2263-01-01T00:00:00Z"), "expires_at", "must be between"},
		{"year 9999", "POST", "/v1/tokens", token("9999-12-31T23:59:59Z"), "expires_at", "must be between"},
		{"before 1970", "POST", "/v1/tokens", token("1969-12-31T23:59:59Z"), "expires_at", "must be between"},
		{"in the past", "POST", "/v1/tokens", token("2001-01-01T00:00:00Z"), "expires_at", "must be in the future"},
		{"finer than nanoseconds", "POST", "/v1/tokens", token("2100-01-01T00:00:00.1234567891Z"), "expires_at", "at most 9 fractional digits"},
		{"not RFC 3339", "POST", "/v1/tokens", token("2100-01-01 00:00:00"), "expires_at", "must be an RFC 3339 time"},
		{"escaped", "POST", "/v1/tokens", `{"name":"t","role":"reader","expires_at":"2100\u002d01-01T00:00:00Z"}`, "expires_at", "must be an RFC 3339 time"},
	})
}

// TestCloudStorageLocationsOverHTTP: an aws, gcp or kubernetes cloud's
// storage_location must be a bucket URL of its scheme with a clean
// prefix; anything else is a 400 naming storage_location.
func TestCloudStorageLocationsOverHTTP(t *testing.T) {
	e := newTestEnv(t)
	aws := func(loc string) string {
		return fmt.Sprintf(`{"name":"a","provider":"aws","region":"us-east-1","aws":{"role_arn":"arn:aws:iam::123456789012:role/r","subnet_ids":["subnet-0123456789abcdef0"],"image_id":"ami-0123456789abcdef0"},"storage_location":%q}`, loc)
	}
	gcp := func(loc string) string {
		return fmt.Sprintf(`{"name":"g","provider":"gcp","region":"us-central1","gcp":{"service_account":"rayplane@my-project.iam.gserviceaccount.com","project_id":"my-project","zones":["us-central1-a"],"image":"projects/my-project/global/images/family/rayplane-node","machine_types":[{"name":"n2-standard-8","price_per_hour":0.39}]},"storage_location":%q}`, loc)
	}
	var c api.Cloud
	e.must(201, "POST", "/v1/clouds", e.admin, aws("s3://my-logs.example/ray/prod=1")).decode(t, &c)
	if got := rawField(t, e.must(200, "GET", "/v1/clouds/"+c.ID, e.admin, ""), "storage_location"); got != `"s3://my-logs.example/ray/prod=1"` {
		t.Fatalf("storage_location read back as %s", got)
	}
	var cases []badBody
	for _, loc := range []string{"s3://bucket/../other-org", "s3://bucket//x", "s3://bucket/x?versionId=1", "s3://192.168.5.4/x", "s3://Bucket", "gs://bucket",
		"s3://bucket/" + strings.Repeat("a", api.MaxStoragePrefixLen+1), "s3://my_bucket", "s3://bucket/a%2F..", "file:///etc"} {
		cases = append(cases, badBody{"aws " + loc[:min(len(loc), 30)], "POST", "/v1/clouds", aws(loc), "storage_location", "must be a bucket URL like s3://bucket/prefix"})
	}
	for _, loc := range []string{"gs://goog-logs", "gs://bucket/./x", "gs://bucket#frag", "s3://bucket"} {
		cases = append(cases, badBody{"gcp " + loc, "POST", "/v1/clouds", gcp(loc), "storage_location", "must be a bucket URL like gs://bucket/prefix"})
	}
	e.expectRefused(t, cases)
}

// TestOpenAPIMaximaMatchLimits: every copy of a compute config's
// durations in the OpenAPI document states the maximum the server
// enforces.
func TestOpenAPIMaximaMatchLimits(t *testing.T) {
	doc := loadOpenAPI(t)
	want := map[string]float64{
		"worker_idle_timeout_seconds": api.MaxWorkerIdleTimeoutSec,
		"idle_termination_seconds":    api.MaxIdleTerminationSec,
		"maximum_uptime_seconds":      api.MaxUptimeSec,
		"interval_seconds":            api.MaxHeartbeatSec,
		"lost_after_intervals":        api.MaxLostAfter,
	}
	seen := map[string]int{}
	walkJSON(doc, "", func(at string, m map[string]any) {
		props, _ := m["properties"].(map[string]any)
		for name, max := range want {
			p, ok := props[name].(map[string]any)
			if !ok {
				continue
			}
			seen[name]++
			if got, _ := p["maximum"].(float64); got != max {
				t.Errorf("%s/properties/%s: maximum %v, want %v", at, name, p["maximum"], max)
			}
		}
	})
	for name := range want {
		if seen[name] == 0 {
			t.Errorf("no schema has %s", name)
		}
	}
}
