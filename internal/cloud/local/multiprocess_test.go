//go:build linux

package local

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/cloud"
)

// Control-plane replicas are separate processes that may run this driver on
// one Root at the same time (an old and a new replica across a failover).
// These tests run each driver in a child process: the test binary itself,
// which TestMain turns into runChild when childEnv is set.

const (
	childEnv        = "RAYPLANE_LOCAL_TEST_CHILD" // "launch"
	childRootEnv    = "RAYPLANE_LOCAL_TEST_ROOT"
	childAgentEnv   = "RAYPLANE_LOCAL_TEST_AGENT"
	childMaxEnv     = "RAYPLANE_LOCAL_TEST_MAX_INSTANCES"
	childKeyEnv     = "RAYPLANE_LOCAL_TEST_KEY"
	childClusterEnv = "RAYPLANE_LOCAL_TEST_CLUSTER"
)

// runChild makes a Driver on the given Root, says "ready", waits for a line
// on stdin, so that the parent can start several children's Launches at
// the same moment, launches the given key and says "id <instance id>" or
// "err <kind> <error>". Its agent outlives it, as agents outlive a control
// plane, and is adopted by the test process (a child subreaper).
func runChild() int {
	max, _ := strconv.Atoi(os.Getenv(childMaxEnv))
	d, err := New(Config{
		Root:           os.Getenv(childRootEnv),
		AgentBinary:    os.Getenv(childAgentEnv),
		MaxInstances:   max,
		TerminateGrace: 2 * time.Second,
	})
	if err != nil {
		fmt.Println("err new", err)
		return 1
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Println("err stdin", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := os.Getenv(childKeyEnv)
	inst, err := d.Launch(ctx, launchRequest(key, os.Getenv(childClusterEnv), "nd_"+key))
	if err != nil {
		fmt.Println("err", cloud.KindOf(err), err)
		return 0
	}
	fmt.Println("id", inst.ID)
	return 0
}

// child is a driver in another process, ready to launch.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *bytes.Buffer
}

// startChild starts a child that will launch key on d's Root (with d's
// agent binary and MaxInstances) and waits until its driver is made.
func startChild(t *testing.T, d *Driver, key, cluster string) *child {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(),
		// A -race binary otherwise sleeps a second on exit.
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"),
		childEnv+"=launch",
		childRootEnv+"="+d.Root(),
		childAgentEnv+"="+d.cfg.AgentBinary,
		childMaxEnv+"="+strconv.Itoa(d.cfg.MaxInstances),
		childKeyEnv+"="+key,
		childClusterEnv+"="+cluster,
	)
	c := &child{cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = c.stderr
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.stdout = bufio.NewReader(out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if line := c.line(t); line != "ready" {
		t.Fatalf("child for %s said %q, want ready; stderr:\n%s", key, line, c.stderr)
	}
	return c
}

func (c *child) line(t *testing.T) string {
	t.Helper()
	s, err := c.stdout.ReadString('\n')
	if err != nil {
		_ = c.cmd.Wait()
		t.Fatalf("child %v: %v; stderr:\n%s", c.cmd.Env[len(c.cmd.Env)-2:], err, c.stderr)
	}
	return strings.TrimSuffix(s, "\n")
}

// launchTogether lets every child launch at once and answers what each
// said, once all have exited.
func launchTogether(t *testing.T, children ...*child) []string {
	t.Helper()
	for _, c := range children {
		if _, err := io.WriteString(c.stdin, "go\n"); err != nil {
			t.Fatal(err)
		}
	}
	out := make([]string, len(children))
	for i, c := range children {
		out[i] = c.line(t)
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("child said %q and exited with %v; stderr:\n%s", out[i], err, c.stderr)
		}
	}
	return out
}

// TestLaunchIsIdempotentAcrossProcesses: two drivers in two processes
// launch one key at the same moment; one agent runs, and both answer it.
func TestLaunchIsIdempotentAcrossProcesses(t *testing.T) {
	d := newTestDriver(t, sleeper, nil)
	t.Cleanup(func() { killUnder(t, d.Root(), true) })
	ctx := context.Background()

	const rounds = 10
	for i := range rounds {
		key := fmt.Sprintf("xproc-%d", i)
		a, b := startChild(t, d, key, "cl"), startChild(t, d, key, "cl")
		said := launchTogether(t, a, b)
		want := "id " + instanceID(key)
		if said[0] != want || said[1] != want {
			t.Fatalf("round %d: children said %q, want %q from both", i, said, want)
		}
		if n := agents(t, filepath.Join(d.Root(), "cl", instanceID(key))); n != 1 {
			t.Fatalf("round %d: %d agent processes for one key launched by two processes, want 1", i, n)
		}
	}
	got, err := d.List(ctx, map[string]string{cloud.TagCluster: "cl"})
	if err != nil || len(got) != rounds {
		t.Fatalf("list answered %d instances (%v), want %d", len(got), err, rounds)
	}
}

// TestMaxInstancesAcrossProcesses: with MaxInstances 1, two processes
// launching different keys at the same moment start one agent; the other
// answers capacity.
func TestMaxInstancesAcrossProcesses(t *testing.T) {
	d := newTestDriver(t, sleeper, func(c *Config) { c.MaxInstances = 1 })
	t.Cleanup(func() { killUnder(t, d.Root(), true) })
	ctx := context.Background()

	const rounds = 5
	for i := range rounds {
		keys := []string{fmt.Sprintf("cap-%d-a", i), fmt.Sprintf("cap-%d-b", i)}
		said := launchTogether(t, startChild(t, d, keys[0], "cl"), startChild(t, d, keys[1], "cl"))
		launched, refused, running := "", 0, 0
		for j, s := range said {
			switch {
			case s == "id "+instanceID(keys[j]):
				launched = instanceID(keys[j])
			case strings.HasPrefix(s, "err "+string(cloud.Capacity)+" "):
				refused++
			default:
				t.Fatalf("round %d: child for %s said %q", i, keys[j], s)
			}
			running += agents(t, filepath.Join(d.Root(), "cl", instanceID(keys[j])))
		}
		if launched == "" || refused != 1 || running != 1 {
			t.Fatalf("round %d: children said %q with %d agents running; want one launch, one capacity error, one agent",
				i, said, running)
		}
		got, err := d.List(ctx, nil)
		if err != nil || len(got) != 1 || got[0].ID != launched {
			t.Fatalf("round %d: list answered %+v, %v; want %s alone", i, got, err, launched)
		}
		if err := d.Terminate(ctx, launched); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTerminateDuringLaunchInAnotherProcess: a driver terminates an instance
// over and over while another process launches it. Whichever comes last,
// no agent is left running unseen: one that runs is listed, so the
// reconciler can still terminate it.
func TestTerminateDuringLaunchInAnotherProcess(t *testing.T) {
	d := newTestDriver(t, sleeper, nil)
	t.Cleanup(func() { killUnder(t, d.Root(), true) })
	ctx := context.Background()

	const rounds = 10
	for i := range rounds {
		key := fmt.Sprintf("race-%d", i)
		id := instanceID(key)
		c := startChild(t, d, key, "cl")
		said := make(chan string, 1)
		go func() {
			s, _ := c.stdout.ReadString('\n')
			said <- strings.TrimSuffix(s, "\n")
		}()
		if _, err := io.WriteString(c.stdin, "go\n"); err != nil {
			t.Fatal(err)
		}
		var answer string
		for done := false; !done; {
			select {
			case answer = <-said:
				done = true
			default:
				// The pause lets the child's Launch take the lock between
				// two Terminates.
				time.Sleep(time.Millisecond)
			}
			if err := d.Terminate(ctx, id); err != nil {
				t.Fatalf("round %d: terminate: %v", i, err)
			}
		}
		if err := c.cmd.Wait(); err != nil || answer != "id "+id {
			t.Fatalf("round %d: child said %q and exited with %v; stderr:\n%s", i, answer, err, c.stderr)
		}
		running := agents(t, filepath.Join(d.Root(), "cl", id))
		listed, err := d.List(ctx, map[string]string{cloud.TagNode: "nd_" + key})
		if err != nil {
			t.Fatal(err)
		}
		if running != len(listed) {
			t.Fatalf("round %d: %d agents running, %d instances listed (%+v)", i, running, len(listed), listed)
		}
	}
}
