package agent

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// DemandSource reads the pending resource demand of the Ray cluster this
// head runs, for the control plane's autoscaler.
type DemandSource interface {
	Demand(ctx context.Context) ([]api.ResourceDemand, error)
}

// RayStatus reads demand from `ray status`, the one interface Ray keeps
// stable across versions for it. Run is the command runner; tests replace
// it with recorded outputs.
type RayStatus struct {
	Argv []string // default: ray status
	Run  func(ctx context.Context, argv []string) ([]byte, error)
}

var _ DemandSource = RayStatus{}

// Demand runs `ray status` and parses its Demands section.
func (r RayStatus) Demand(ctx context.Context) ([]api.ResourceDemand, error) {
	argv := r.Argv
	if len(argv) == 0 {
		argv = []string{"ray", "status"}
	}
	run := r.Run
	if run == nil {
		run = func(ctx context.Context, argv []string) ([]byte, error) {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			// A child of ray's that keeps stdout open must not hold Wait.
			cmd.WaitDelay = time.Second
			return cmd.Output()
		}
	}
	out, err := run(ctx, argv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return ParseRayStatus(out)
}

var (
	// {'CPU': 1.0}: 10+ pending tasks/actors
	// {'CPU': 1.0}: 4+ from request_resources()
	taskLine = regexp.MustCompile(`^(\{[^}]*\}): (\d+)\+? (pending tasks/actors|from request_resources\(\))`)
	// {'CPU': 1.0} * 1, {'GPU': 2.0} * 1 (PACK): 1+ pending placement groups
	groupLine = regexp.MustCompile(`^(.+) \((PACK|SPREAD|STRICT_PACK|STRICT_SPREAD)\): (\d+)\+? pending placement groups`)
	bundle    = regexp.MustCompile(`(\{[^}]*\}) \* (\d+)`)
	entry     = regexp.MustCompile(`'([^']+)': ([0-9.eE+-]+)`)
)

// ParseRayStatus reads the Demands section of `ray status` output into
// demand. Lines it does not understand are skipped, not guessed at.
func ParseRayStatus(out []byte) ([]api.ResourceDemand, error) {
	var demand []api.ResourceDemand
	in := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "Demands:":
			in = true
			continue
		case !in:
			continue
		case line == "" || strings.HasPrefix(line, "(no resource demands)"):
			continue
		case strings.HasSuffix(line, ":") || strings.HasPrefix(line, "---") || strings.HasPrefix(line, "===="):
			in = false // the next section
			continue
		}
		if m := groupLine.FindStringSubmatch(line); m != nil {
			groups, _ := strconv.Atoi(m[3])
			for _, b := range bundle.FindAllStringSubmatch(m[1], -1) {
				shape, err := parseShape(b[1])
				if err != nil {
					continue
				}
				n, _ := strconv.Atoi(b[2])
				demand = append(demand, api.ResourceDemand{Shape: shape, Count: n * groups, Strategy: m[2]})
			}
			continue
		}
		if m := taskLine.FindStringSubmatch(line); m != nil {
			shape, err := parseShape(m[1])
			if err != nil {
				continue
			}
			n, _ := strconv.Atoi(m[2])
			demand = append(demand, api.ResourceDemand{Shape: shape, Count: n})
		}
	}
	return demand, sc.Err()
}

// parseShape reads a Python dict of resource amounts, e.g. {'CPU': 1.0}.
func parseShape(s string) (api.Resources, error) {
	shape := api.Resources{}
	for _, m := range entry.FindAllStringSubmatch(s, -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return nil, fmt.Errorf("resource %s in %s: %w", m[1], s, err)
		}
		if v > 0 {
			shape[m[1]] = v
		}
	}
	if len(shape) == 0 {
		return nil, fmt.Errorf("no resources in %q", s)
	}
	return shape, nil
}
