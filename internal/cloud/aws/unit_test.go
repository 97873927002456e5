package aws

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/bootscript"
)

// TestUserData: the user data is bootscript's script, and its payload
// comes back out of it (bootscript's tests run the script itself).
func TestUserData(t *testing.T) {
	const payload = `{"bootstrap_token":"rpb_t"}`
	script := UserData([]byte(payload))
	if script != bootscript.Build([]byte(payload)) || len(script) > maxUserData {
		t.Fatalf("script:\n%s", script)
	}
	got, err := ParseUserData(script)
	if err != nil || string(got) != payload {
		t.Fatalf("ParseUserData = %q, %v", got, err)
	}
	if _, err := ParseUserData(script + "id\n"); err == nil {
		t.Fatal("ParseUserData accepted another script")
	}
}

func TestClientToken(t *testing.T) {
	long := strings.Repeat("ñ", 100)
	seen := map[string]bool{}
	for _, key := range []string{"node_1", long} {
		for i := range 8 {
			subnet := fmt.Sprintf("subnet-%017x", i)
			for _, m := range []string{api.MarketOnDemand, api.MarketSpot} {
				for attempt := range maxTokenAttempts {
					tok := clientToken(key, subnet, m, attempt)
					if len(tok) > 64 {
						t.Fatalf("token %q is %d long", tok, len(tok))
					}
					for _, r := range tok {
						if r > 126 || r < 33 {
							t.Fatalf("token %q is not printable ASCII", tok)
						}
					}
					if seen[tok] {
						t.Fatalf("token %q twice", tok)
					}
					seen[tok] = true
					if clientToken(key, subnet, m, attempt) != tok {
						t.Fatal("token is not deterministic")
					}
				}
			}
		}
	}
}

func TestSessionName(t *testing.T) {
	cases := []struct{ org, cloud, want string }{
		{"org_1", "cld_2", "rayplane-org_1-cld_2"},
		{"o/r g", "c:1", "rayplane-o-r-g-c-1"},
		{strings.Repeat("o", 40), strings.Repeat("c", 40), "rayplane-" + strings.Repeat("o", 40) + "-" + strings.Repeat("c", 14)},
	}
	for _, c := range cases {
		got := SessionName(c.org, c.cloud)
		if got != c.want || len(got) > 64 {
			t.Errorf("SessionName(%q, %q) = %q, want %q", c.org, c.cloud, got, c.want)
		}
	}
}

func TestKindOf(t *testing.T) {
	api := func(code string) error {
		return fmt.Errorf("operation error EC2: RunInstances: %w", &smithy.GenericAPIError{Code: code, Message: "m"})
	}
	status := func(code int) error {
		return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}}, Err: errors.New("x")}
	}
	cases := []struct {
		err  error
		want cloud.Kind
	}{
		{api("InsufficientInstanceCapacity"), cloud.Capacity},
		{api("Unsupported"), cloud.Capacity},
		{api("SpotMaxPriceTooLow"), cloud.Capacity},
		{api("VcpuLimitExceeded"), cloud.Quota},
		{api("MaxSpotInstanceCountExceeded"), cloud.Quota},
		{api("UnauthorizedOperation"), cloud.Auth},
		// The first spot launch of an account whose caller may not let
		// EC2 create the Spot service-linked role.
		{api("AuthFailure.ServiceLinkedRoleCreationNotPermitted"), cloud.Auth},
		{api("AccessDenied"), cloud.Auth},
		{api("InvalidClientTokenId"), cloud.Auth},
		{api("ExpiredToken"), cloud.Auth},
		{api("RequestLimitExceeded"), cloud.Transient},
		{api("IdempotentParameterMismatch"), cloud.Transient},
		{api("InvalidAMIID.NotFound"), cloud.Invalid},
		{api("InvalidSubnetID.NotFound"), cloud.Invalid},
		{api("InvalidParameterValue"), cloud.Invalid},
		{api("InvalidInstanceType"), cloud.Invalid},
		{api("UnsupportedOperation"), cloud.Invalid},
		{api("SomethingNew"), cloud.Transient},
		{status(503), cloud.Transient},
		{status(403), cloud.Auth},
		{errors.New("dial tcp: connection refused"), cloud.Transient},
	}
	for _, c := range cases {
		if got := kindOf(c.err); got != c.want {
			t.Errorf("kindOf(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

func TestNewRefusesIncompleteClouds(t *testing.T) {
	good := Config{Region: "us-east-1", Cloud: api.AWSCloud{
		RoleARN: "arn:aws:iam::123456789012:role/rayplane", ExternalID: "ext",
		SubnetIDs: []string{"subnet-0123456789abcdef0"}, ImageID: "ami-0123456789abcdef0",
	}}
	if _, err := New(good); err != nil {
		t.Fatalf("New: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"role":        func(c *Config) { c.Cloud.RoleARN = "arn:aws:iam::123456789012:user/x" },
		"external id": func(c *Config) { c.Cloud.ExternalID = "" },
		"region":      func(c *Config) { c.Region = "" },
		"subnets":     func(c *Config) { c.Cloud.SubnetIDs = nil },
		"image":       func(c *Config) { c.Cloud.ImageID = "" },
	} {
		c := good
		mut(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted %+v", name, c.Cloud)
		}
	}
}

func TestSafeLogMode(t *testing.T) {
	all := awssdk.LogSigning | awssdk.LogRetries | awssdk.LogRequest | awssdk.LogRequestWithBody |
		awssdk.LogResponse | awssdk.LogResponseWithBody | awssdk.LogDeprecatedUsage
	if got := safeLogMode(all); got != awssdk.LogRetries|awssdk.LogDeprecatedUsage {
		t.Fatalf("safeLogMode kept %b", got)
	}
}
