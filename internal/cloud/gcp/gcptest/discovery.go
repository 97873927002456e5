package gcptest

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// The discovery documents the server routes and validates by, as shipped in
// the google.golang.org/api module this repository requires (go.mod pins
// the version, so the documents change only with a deliberate upgrade).
var discoveryFiles = []string{
	"compute/v1/compute-api.json",
	"iamcredentials/v1/iamcredentials-api.json",
	"cloudresourcemanager/v3/cloudresourcemanager-api.json",
	"sts/v1/sts-api.json",
}

// restDescription is the part of a discovery document the server uses.
type restDescription struct {
	Name        string               `json:"name"`
	ServicePath string               `json:"servicePath"`
	Parameters  map[string]*param    `json:"parameters"`
	Schemas     map[string]*schema   `json:"schemas"`
	Resources   map[string]*resource `json:"resources"`
	Methods     map[string]*method   `json:"methods"`
}

type resource struct {
	Methods   map[string]*method   `json:"methods"`
	Resources map[string]*resource `json:"resources"`
}

type method struct {
	ID         string            `json:"id"`
	Path       string            `json:"path"`
	HTTPMethod string            `json:"httpMethod"`
	Parameters map[string]*param `json:"parameters"`
	Request    *schema           `json:"request"`
	Scopes     []string          `json:"scopes"`

	api     *restDescription
	prefix  string         // the template's literal start: only paths with it are matched against re
	re      *regexp.Regexp // servicePath+path, anchored, one group per path parameter
	names   []string       // path parameter names, in group order
	literal int            // literal characters in the template: the more specific template wins
}

type param struct {
	Type     string   `json:"type"`
	Format   string   `json:"format"`
	Location string   `json:"location"`
	Required bool     `json:"required"`
	Repeated bool     `json:"repeated"`
	Pattern  string   `json:"pattern"`
	Enum     []string `json:"enum"`
	Minimum  string   `json:"minimum"`
	Maximum  string   `json:"maximum"`

	re *regexp.Regexp
}

type schema struct {
	ID                   string             `json:"id"`
	Ref                  string             `json:"$ref"`
	Type                 string             `json:"type"`
	Format               string             `json:"format"`
	Properties           map[string]*schema `json:"properties"`
	AdditionalProperties *schema            `json:"additionalProperties"`
	Items                *schema            `json:"items"`
	Enum                 []string           `json:"enum"`
}

// catalog is every method of every document, for routing.
type catalog struct {
	methods []*method
	byID    map[string]*method
}

var (
	catalogOnce sync.Once
	catalogVal  *catalog
	catalogErr  error
)

// loadCatalog reads and compiles the discovery documents once per process
// (compute's is 6 MB).
func loadCatalog() (*catalog, error) {
	catalogOnce.Do(func() { catalogVal, catalogErr = readCatalog() })
	return catalogVal, catalogErr
}

func readCatalog() (*catalog, error) {
	dir, err := apiModuleDir()
	if err != nil {
		return nil, err
	}
	c := &catalog{byID: map[string]*method{}}
	for _, f := range discoveryFiles {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, fmt.Errorf("discovery document: %w", err)
		}
		d := &restDescription{}
		if err := json.Unmarshal(b, d); err != nil {
			return nil, fmt.Errorf("discovery document %s: %w", f, err)
		}
		for _, p := range d.Parameters {
			if err := p.compile(); err != nil {
				return nil, fmt.Errorf("discovery document %s: %w", f, err)
			}
		}
		var walk func(ms map[string]*method, rs map[string]*resource) error
		walk = func(ms map[string]*method, rs map[string]*resource) error {
			for _, m := range ms {
				if err := m.compile(d); err != nil {
					return fmt.Errorf("discovery document %s: method %s: %w", f, m.ID, err)
				}
				c.methods = append(c.methods, m)
				c.byID[m.ID] = m
			}
			for _, r := range rs {
				if err := walk(r.Methods, r.Resources); err != nil {
					return err
				}
			}
			return nil
		}
		if err := walk(d.Methods, d.Resources); err != nil {
			return nil, err
		}
	}
	sort.Slice(c.methods, func(i, j int) bool { return c.methods[i].ID < c.methods[j].ID })
	return c, nil
}

// apiModuleDir finds google.golang.org/api in the module cache as `go list`
// sees it from this repository's module root, so the version is go.mod's.
func apiModuleDir() (string, error) {
	if d := os.Getenv("RAYPLANE_GOOGLE_API_DIR"); d != "" {
		return d, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("find google.golang.org/api: %w", err)
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "google.golang.org/api")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return "", fmt.Errorf("find google.golang.org/api (run `go mod download`): %v %s", err, stderr)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("find google.golang.org/api: not downloaded (run `go mod download`)")
	}
	return dir, nil
}

var templateVar = regexp.MustCompile(`\{(\+?)([A-Za-z0-9_.]+)\}`)

// compile turns the method's path template (RFC 6570 as discovery uses it:
// {x} is one segment, {+x} may span several) into an anchored regexp.
func (m *method) compile(d *restDescription) error {
	m.api = d
	tmpl := d.ServicePath + m.Path
	var b strings.Builder
	b.WriteString("^/")
	last := 0
	for _, loc := range templateVar.FindAllStringSubmatchIndex(tmpl, -1) {
		lit := tmpl[last:loc[0]]
		b.WriteString(regexp.QuoteMeta(lit))
		m.literal += len(lit)
		if loc[3] > loc[2] { // {+name}
			b.WriteString("(.+)")
		} else {
			b.WriteString("([^/]+)")
		}
		m.names = append(m.names, tmpl[loc[4]:loc[5]])
		last = loc[1]
	}
	b.WriteString(regexp.QuoteMeta(tmpl[last:]))
	m.literal += len(tmpl) - last
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return err
	}
	m.re = re
	m.prefix = "/" + tmpl
	if i := strings.Index(tmpl, "{"); i >= 0 {
		m.prefix = "/" + tmpl[:i]
	}
	for name, p := range m.Parameters {
		if err := p.compile(); err != nil {
			return fmt.Errorf("parameter %s: %w", name, err)
		}
	}
	return nil
}

// compile anchors the parameter's pattern: discovery's compute patterns are
// written unanchored, the others anchored; both mean the whole value.
func (p *param) compile() error {
	if p.Pattern == "" {
		return nil
	}
	if re := patternCache[p.Pattern]; re != nil {
		p.re = re
		return nil
	}
	re, err := regexp.Compile("^(?:" + p.Pattern + ")$")
	if err != nil {
		return err
	}
	patternCache[p.Pattern] = re
	p.re = re
	return nil
}

// patternCache shares the compiled patterns: the documents repeat a handful
// of them thousands of times (only readCatalog, under catalogOnce, uses it).
var patternCache = map[string]*regexp.Regexp{}

// route finds the method for an HTTP verb and a (decoded) URL path. When
// several templates match the one whose path parameters all match their
// patterns wins, and among those the most literal one. ok is false when no
// template matches; a non-nil error is a path parameter that matches no
// pattern (400 as Google answers).
func (c *catalog) route(verb, path string) (m *method, params map[string]string, ok bool, err *apiError) {
	var firstBad *apiError
	for _, cand := range c.methods {
		if cand.HTTPMethod != verb || !strings.HasPrefix(path, cand.prefix) {
			continue
		}
		sub := cand.re.FindStringSubmatch(path)
		if sub == nil {
			continue
		}
		ps := map[string]string{}
		var bad *apiError
		for i, name := range cand.names {
			v := sub[i+1]
			ps[name] = v
			if p := cand.Parameters[name]; p != nil && p.re != nil && !p.re.MatchString(v) && bad == nil {
				bad = errInvalid(fmt.Sprintf("Invalid value for field '%s': '%s'. Must be a match of regex '%s'", name, v, p.Pattern))
			}
		}
		if bad != nil {
			if firstBad == nil {
				firstBad = bad
			}
			continue
		}
		if m == nil || cand.literal > m.literal {
			m, params = cand, ps
		}
	}
	if m != nil {
		return m, params, true, nil
	}
	if firstBad != nil {
		return nil, nil, true, firstBad
	}
	return nil, nil, false, nil
}

// systemParameters are accepted on every method although no discovery
// document declares them: Google's front end treats "$"-prefixed names as
// system parameters. The generated cloud.google.com/go REST clients (e.g.
// resourcemanager/apiv3) send $alt=json;enum-encoding=int on every call.
var systemParameters = map[string][]string{
	"$alt": {"json", "json;enum-encoding=int", "proto", "media"},
}

// checkQuery validates the query string: every name a parameter of the
// method (location query) or of the API (the standard parameters), given
// once unless repeated, of the declared type and enum and within the
// declared bounds; the method's required query parameters present.
func (m *method) checkQuery(q map[string][]string) *apiError {
	for name, vs := range q {
		if allowed, ok := systemParameters[name]; ok {
			for _, v := range vs {
				if !contains(allowed, v) {
					return errInvalid(fmt.Sprintf("Invalid system parameter value for %s: %q", name, v))
				}
			}
			continue
		}
		p := m.Parameters[name]
		if p == nil || p.Location != "query" {
			p = m.api.Parameters[name]
		}
		if p == nil || p.Location != "query" {
			return errInvalid(fmt.Sprintf("Invalid JSON payload received. Unknown name %q: Cannot bind query parameter. Field '%s' could not be found in request message.", name, name))
		}
		if len(vs) > 1 && !p.Repeated {
			return errInvalid(fmt.Sprintf("Invalid value for field '%s': parameter given %d times but is not repeated", name, len(vs)))
		}
		for _, v := range vs {
			if err := p.checkValue(name, v); err != nil {
				return err
			}
		}
	}
	for name, p := range m.Parameters {
		if p.Location == "query" && p.Required && len(q[name]) == 0 {
			return errInvalid(fmt.Sprintf("Required parameter '%s' is missing", name))
		}
	}
	return nil
}

func (p *param) checkValue(name, v string) *apiError {
	bad := func(kind string) *apiError {
		return errInvalid(fmt.Sprintf("Invalid value at '%s' (%s), %q", name, kind, v))
	}
	switch p.Type {
	case "boolean":
		if v != "true" && v != "false" {
			return bad("TYPE_BOOL")
		}
	case "integer":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || !inIntRange(p.Format, n) {
			return bad(protoKind(p.Type, p.Format))
		}
		if p.Minimum != "" {
			if min, err := strconv.ParseInt(p.Minimum, 10, 64); err == nil && n < min {
				return errInvalid(fmt.Sprintf("Invalid value for field '%s': '%s'. Must be greater than or equal to %s", name, v, p.Minimum))
			}
		}
		if p.Maximum != "" {
			if max, err := strconv.ParseInt(p.Maximum, 10, 64); err == nil && n > max {
				return errInvalid(fmt.Sprintf("Invalid value for field '%s': '%s'. Must be less than or equal to %s", name, v, p.Maximum))
			}
		}
	case "number":
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return bad("TYPE_DOUBLE")
		}
	case "string":
		if err := checkStringFormat(p.Format, v); err != nil {
			return bad(protoKind(p.Type, p.Format))
		}
	}
	if len(p.Enum) > 0 && !contains(p.Enum, v) {
		return bad("TYPE_ENUM")
	}
	if p.re != nil && !p.re.MatchString(v) {
		return errInvalid(fmt.Sprintf("Invalid value for field '%s': '%s'. Must be a match of regex '%s'", name, v, p.Pattern))
	}
	return nil
}

func inIntRange(format string, n int64) bool {
	switch format {
	case "int32":
		return n >= math.MinInt32 && n <= math.MaxInt32
	case "uint32":
		return n >= 0 && n <= math.MaxUint32
	}
	return true
}

func checkStringFormat(format, v string) error {
	switch format {
	case "int64":
		_, err := strconv.ParseInt(v, 10, 64)
		return err
	case "uint64":
		_, err := strconv.ParseUint(v, 10, 64)
		return err
	}
	return nil
}

func protoKind(typ, format string) string {
	switch {
	case typ == "boolean":
		return "TYPE_BOOL"
	case format == "int32":
		return "TYPE_INT32"
	case format == "uint32":
		return "TYPE_UINT32"
	case format == "int64":
		return "TYPE_INT64"
	case format == "uint64":
		return "TYPE_UINT64"
	case format == "float":
		return "TYPE_FLOAT"
	case typ == "number":
		return "TYPE_DOUBLE"
	case format == "byte":
		return "TYPE_BYTES"
	}
	return "TYPE_STRING"
}

// checkBody validates a JSON request body against the method's request
// schema as Google's front end parses proto3 JSON: every field declared
// (unknown names are refused, not ignored), every value of its type —
// strings for strings, true/false for booleans, numbers (or numeric
// strings) for integers, int64 and uint64, objects for messages, arrays for
// repeated fields, enum names from the declared list; null is accepted
// anywhere (the field's default). pathParams are the method's path
// parameters: gRPC transcoding with body "*" also accepts them in the body
// (resourcemanager/apiv3 sends "resource" there).
func (m *method) checkBody(api *restDescription, body []byte, pathParams map[string]string) *apiError {
	if m.Request == nil {
		if len(strings.TrimSpace(string(body))) > 0 {
			return errInvalid("Invalid JSON payload received. The request has a body but the method takes none.")
		}
		return nil
	}
	var v any
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		if len(strings.TrimSpace(string(body))) == 0 {
			v = map[string]any{}
		} else {
			return errInvalid(fmt.Sprintf("Invalid JSON payload received. %v", err))
		}
	}
	if dec.More() {
		return errInvalid("Invalid JSON payload received. Unexpected data after the JSON value.")
	}
	root := api.Schemas[m.Request.Ref]
	if root == nil {
		return errInternal("request schema " + m.Request.Ref + " missing from the discovery document")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return errInvalid("Invalid JSON payload received. Expected an object.")
	}
	for name := range pathParams {
		if _, declared := root.Properties[name]; !declared {
			delete(obj, name)
		}
	}
	return checkValue(api, root, obj, snake(m.Request.Ref), true)
}

// checkValue checks v against s; at is the field path in Google's style
// (snake_case, [i] for elements).
func checkValue(api *restDescription, s *schema, v any, at string, top bool) *apiError {
	if s.Ref != "" {
		ref := api.Schemas[s.Ref]
		if ref == nil {
			return errInternal("schema " + s.Ref + " missing from the discovery document")
		}
		s = ref
	}
	if v == nil {
		return nil
	}
	invalid := func(kind string) *apiError {
		b, _ := json.Marshal(v)
		return errInvalid(fmt.Sprintf("Invalid value at '%s' (%s), %s", at, kind, b)).field(at)
	}
	switch s.Type {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return errInvalid(fmt.Sprintf("Invalid JSON payload received. Expected an object at '%s'.", at)).field(at)
		}
		if s.AdditionalProperties != nil && s.Properties == nil {
			for k, e := range obj {
				if err := checkValue(api, s.AdditionalProperties, e, at+"["+strconv.Quote(k)+"]", false); err != nil {
					return err
				}
			}
			return nil
		}
		if s.Format == "google.protobuf.Any" || (s.Properties == nil && s.AdditionalProperties == nil) {
			return nil // free-form
		}
		for _, k := range sortedKeys(obj) {
			fs := s.Properties[k]
			if fs == nil {
				return errInvalid(fmt.Sprintf("Invalid JSON payload received. Unknown name %q at '%s': Cannot find field.", k, at)).field(at)
			}
			if err := checkValue(api, fs, obj[k], joinPath(at, k), false); err != nil {
				return err
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return invalid("TYPE_ARRAY")
		}
		for i, e := range arr {
			if err := checkValue(api, s.Items, e, fmt.Sprintf("%s[%d]", at, i), false); err != nil {
				return err
			}
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return invalid("TYPE_BOOL")
		}
	case "integer":
		n, ok := numeric(v)
		if !ok {
			return invalid(protoKind(s.Type, s.Format))
		}
		i, err := strconv.ParseInt(n, 10, 64)
		if err != nil || !inIntRange(s.Format, i) {
			return invalid(protoKind(s.Type, s.Format))
		}
	case "number":
		switch x := v.(type) {
		case json.Number:
		case string:
			if _, err := strconv.ParseFloat(x, 64); err != nil && x != "NaN" && x != "Infinity" && x != "-Infinity" {
				return invalid(protoKind(s.Type, s.Format))
			}
		default:
			return invalid(protoKind(s.Type, s.Format))
		}
	case "string":
		if s.Format == "int64" || s.Format == "uint64" {
			n, ok := numeric(v)
			if !ok || checkStringFormat(s.Format, n) != nil {
				return invalid(protoKind(s.Type, s.Format))
			}
			return nil
		}
		str, ok := v.(string)
		if !ok {
			// proto3 JSON accepts an enum's number too; discovery does not
			// give the numbers, so any integer is let through.
			if n, isNum := v.(json.Number); isNum && len(s.Enum) > 0 {
				if _, err := strconv.ParseInt(string(n), 10, 32); err == nil {
					return nil
				}
			}
			if len(s.Enum) > 0 {
				return invalid("TYPE_ENUM")
			}
			return invalid(protoKind(s.Type, s.Format))
		}
		if len(s.Enum) > 0 && !contains(s.Enum, str) {
			return invalid("TYPE_ENUM")
		}
	case "any", "":
	}
	return nil
}

// numeric answers the decimal text of a JSON number or numeric string (proto3
// JSON accepts both for integers).
func numeric(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		return string(x), true
	case string:
		return x, true
	}
	return "", false
}

func joinPath(at, field string) string {
	return at + "." + snake(field)
}

// snake turns a JSON (lowerCamel) or schema (UpperCamel) name into the proto
// field name Google's error messages use.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r - 'A' + 'a')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
