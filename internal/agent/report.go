package agent

import (
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/rayplane/rayplane/internal/api"
)

// The control plane refuses a whole heartbeat with anything outside the
// protocol's bounds (internal/api/agent.go), and a node whose heartbeats
// are refused looks silent and is replaced. So what the agent relays from
// the runtime is kept within them before it is sent: a shape Ray reports
// that the control plane would refuse is left out, not the whole report.

// withinBounds answers the demand entries the control plane takes: at most
// api.MaxAgentDemandEntries (Ray's own cap), each with a shape of valid
// resource names and amounts, counts capped at api.MaxBundleCount.
func withinBounds(ds []api.ResourceDemand) []api.ResourceDemand {
	var out []api.ResourceDemand
	for _, d := range ds {
		if len(out) == api.MaxAgentDemandEntries {
			break
		}
		if d.Count < 1 || !shapeOK(d.Shape) || (d.Strategy != "" && !validStrategy(d.Strategy)) {
			continue
		}
		d.Count = min(d.Count, api.MaxBundleCount)
		out = append(out, d)
	}
	return out
}

func shapeOK(shape api.Resources) bool {
	if len(shape) == 0 || len(shape) > api.MaxAgentResources {
		return false
	}
	for k, v := range shape {
		if !api.ResourceNamePattern.MatchString(k) || !(v > 0 && v <= api.MaxResourceAmount) {
			return false
		}
	}
	return true
}

func validStrategy(s string) bool { return slices.Contains(api.Strategies, s) }

// cutMessage keeps what the control plane keeps of a runtime message: at
// most api.MaxRuntimeMessageBytes of valid UTF-8, cut at a character.
func cutMessage(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= api.MaxRuntimeMessageBytes {
		return s
	}
	cut := api.MaxRuntimeMessageBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
