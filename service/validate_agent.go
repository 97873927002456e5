package service

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rayplane/rayplane/internal/api"
)

// What an agent reports is checked as strictly as what a user asks for,
// with the same error shape: the code on a node runs as the same user as
// its agent, so a heartbeat or a registration may come from a tenant's
// program rather than from `rayplaned agent`. A report that fails a check
// is refused whole (400) before anything of it is recorded: it never
// reaches the liveness table, the planner or the store.
//
// The user-side CheckResourceDemand is not reused for demand: Ray reports
// up to 1,000 entries where a user's resource_requests hold 256, and an
// agent's amounts are compared so that NaN fails too (a Go caller, a
// fuzzer or another decoder may produce one even though JSON cannot).

// maxAgentFieldErrors bounds the fields one refusal lists: a hostile
// report of 1,000 bad entries gets a short answer, not one line for each.
const maxAgentFieldErrors = 20

// hostNamePattern is a host name of dot-separated labels. Underscores are
// allowed (some orchestrators' names have them); a label never starts with
// '-', so a host cannot be read as an option where a command takes the
// address, and nothing in it means anything to a shell.
var hostNamePattern = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$`)

var (
	runtimeHashPattern = regexp.MustCompile(`^[0-9a-f]{0,64}$`)
	portPattern        = regexp.MustCompile(`^[0-9]{1,5}$`)
)

// earliestReportTime is the earliest time a report may carry: a clock
// before it is broken, not a node that has been idle since 1970.
var earliestReportTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// agentFields collects the problems of one report, listing at most
// maxAgentFieldErrors of them.
type agentFields struct {
	list  api.FieldErrors
	total int
}

func (f *agentFields) add(field, format string, args ...any) {
	f.total++
	if len(f.list) < maxAgentFieldErrors {
		f.list.Add(field, format, args...)
	}
}

func (f *agentFields) err() error {
	err := f.list.Err()
	if f.total > len(f.list) {
		e := err.(*api.Error)
		e.Message = fmt.Sprintf("%d invalid fields (the first %d listed), first %s: %s", f.total, len(f.list), f.list[0].Field, f.list[0].Reason)
	}
	return err
}

// CheckAgentHeartbeat validates a heartbeat received at now. It cuts
// runtime_message to api.MaxRuntimeMessageBytes of valid UTF-8 without
// control characters (but newlines and tabs) instead of refusing it: the
// message is the runtime's own words, and a chatty runtime must not make
// its node look silent.
func CheckAgentHeartbeat(hb *api.AgentHeartbeat, now time.Time) error {
	var f agentFields
	if !slices.Contains(api.RuntimeStates, hb.RuntimeState) {
		f.add("runtime_state", "must be one of %s", strings.Join(api.RuntimeStates, ", "))
	}
	hb.RuntimeMessage = cleanMessage(hb.RuntimeMessage, api.MaxRuntimeMessageBytes)
	if hb.RuntimeRestarts < 0 {
		f.add("runtime_restarts", "must not be negative")
	}
	if hb.RuntimeCrashes < 0 {
		f.add("runtime_crashes", "must not be negative")
	}
	if !runtimeHashPattern.MatchString(hb.RuntimeHash) {
		f.add("runtime_hash", "must be at most %d lowercase hexadecimal characters", api.MaxRuntimeHashLen)
	}
	if hb.Address != "" {
		checkHostPort(&f, "address", hb.Address)
	}
	if len(hb.ConfigHash) > api.MaxConfigHashLen || !runtimeHashPattern.MatchString(hb.ConfigHash) {
		f.add("config_hash", "must be at most %d lowercase hexadecimal characters", api.MaxConfigHashLen)
	}
	checkReportedResources(&f, "usage", hb.Usage)
	if t := hb.IdleSince; t != nil {
		switch {
		case t.Before(earliestReportTime):
			f.add("idle_since", "must not be before %s", earliestReportTime.Format(time.DateOnly))
		case t.After(now.Add(api.MaxClockSkew)):
			f.add("idle_since", "must not be in the future (more than %s ahead of the control plane's clock)", api.MaxClockSkew)
		}
	}
	checkAgentDemand(&f, "demand", hb.Demand)
	return f.err()
}

// CheckAgentRegistration validates a registration body.
func CheckAgentRegistration(req *api.AgentRegisterRequest) error {
	var f agentFields
	switch {
	case req.NodeID == "":
		f.add("node_id", "is required")
	case !ValidID(PrefixNode, req.NodeID):
		f.add("node_id", "must be an id like %s_…", PrefixNode)
	}
	checkLabel(&f, "hostname", req.Hostname, api.MaxHostnameLen)
	checkLabel(&f, "agent_version", req.AgentVersion, api.MaxAgentVersionLen)
	checkReportedResources(&f, "resources", req.Resources)
	return f.err()
}

// checkLabel checks an informational string: bounded, valid UTF-8,
// printable.
func checkLabel(f *agentFields, field, v string, maxLen int) {
	switch {
	case len(v) > maxLen:
		f.add(field, "must be at most %d bytes", maxLen)
	case !utf8.ValidString(v) || strings.IndexFunc(v, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		f.add(field, "must be printable UTF-8 text")
	}
}

// checkHostPort checks an address a node reports: host:port, the host an
// IP address or a host name, the port 1-65535.
func checkHostPort(f *agentFields, field, v string) {
	if len(v) > api.MaxAgentAddressLen {
		f.add(field, "must be at most %d bytes", api.MaxAgentAddressLen)
		return
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		f.add(field, "must be host:port")
		return
	}
	if _, err := netip.ParseAddr(host); err != nil && !hostNamePattern.MatchString(host) {
		f.add(field, "must be host:port with an IP address or a host name")
	}
	if n, err := strconv.Atoi(port); !portPattern.MatchString(port) || err != nil || n < 1 || n > 65535 {
		f.add(field, "must be host:port with a port from 1 to 65535")
	}
}

// checkReportedResources checks amounts a node reports of what it has or
// uses: at most api.MaxAgentResources names, each a resource name, each
// amount finite, not negative and at most api.MaxResourceAmount.
func checkReportedResources(f *agentFields, field string, rs api.Resources) {
	if len(rs) > api.MaxAgentResources {
		f.add(field, "must name at most %d resources", api.MaxAgentResources)
		return
	}
	for _, k := range slices.Sorted(maps.Keys(rs)) {
		p := resourceField(field, k)
		if !resourceNamePattern.MatchString(k) {
			f.add(p, "is not a resource name")
		}
		if v := rs[k]; !(v >= 0 && v <= api.MaxResourceAmount) {
			f.add(p, "must be a finite amount from 0 to %g", api.MaxResourceAmount)
		}
	}
}

// checkAgentDemand checks the head's pending demand: at most Ray's 1,000
// entries; each a non-empty shape of resource names and finite positive
// amounts, a count from 1 to api.MaxBundleCount, a known strategy or none.
func checkAgentDemand(f *agentFields, field string, ds []api.ResourceDemand) {
	if len(ds) > api.MaxAgentDemandEntries {
		f.add(field, "must have at most %d entries", api.MaxAgentDemandEntries)
		return
	}
	for i, d := range ds {
		p := fmt.Sprintf("%s[%d]", field, i)
		if d.Count < 1 || d.Count > api.MaxBundleCount {
			f.add(p+".count", "must be between 1 and %d", api.MaxBundleCount)
		}
		if d.Strategy != "" && !slices.Contains(api.Strategies, d.Strategy) {
			f.add(p+".strategy", "must be one of %s", strings.Join(api.Strategies, ", "))
		}
		switch {
		case len(d.Shape) == 0:
			f.add(p+".shape", "must ask for at least one resource")
			continue
		case len(d.Shape) > api.MaxAgentResources:
			f.add(p+".shape", "must name at most %d resources", api.MaxAgentResources)
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(d.Shape)) {
			rp := resourceField(p+".shape", k)
			if !resourceNamePattern.MatchString(k) {
				f.add(rp, "is not a resource name")
			}
			if v := d.Shape[k]; !(v > 0 && v <= api.MaxResourceAmount) { // NaN fails too
				f.add(rp, "must be a finite amount above 0 and at most %g", api.MaxResourceAmount)
			}
		}
	}
}

// resourceField names a resource of a map field, shape["CPU"]; a name too
// long to be one is cut, so a hostile key does not come back whole in the
// answer.
func resourceField(field, key string) string {
	const show = 64
	if len(key) > show {
		key = strings.ToValidUTF8(key[:show], "") + "…"
	}
	return fmt.Sprintf("%s[%q]", field, key)
}

// cleanMessage makes a node's message safe to keep and show: valid UTF-8,
// no control characters but newline and tab, at most maxBytes bytes (cut
// at a character boundary).
func cleanMessage(s string, maxBytes int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || !unicode.IsControl(r) {
			return r
		}
		return '\uFFFD'
	}, s)
	if len(s) <= maxBytes {
		return s
	}
	cut := maxBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
