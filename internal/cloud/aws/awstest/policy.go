package awstest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// policyDoc is an IAM policy document, as much of it as the front reads.
type policyDoc struct {
	Statement statements `json:"Statement"`
}

type statement struct {
	Sid          string                           `json:"Sid"`
	Effect       string                           `json:"Effect"`
	Principal    json.RawMessage                  `json:"Principal"`
	NotPrincipal json.RawMessage                  `json:"NotPrincipal"`
	Action       stringList                       `json:"Action"`
	NotAction    stringList                       `json:"NotAction"`
	Condition    map[string]map[string]stringList `json:"Condition"`
}

// statements reads a Statement that is one object or a list of them.
type statements []statement

func (s *statements) UnmarshalJSON(b []byte) error {
	if t := strings.TrimSpace(string(b)); strings.HasPrefix(t, "{") {
		var one statement
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = statements{one}
		return nil
	}
	var many []statement
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// stringList reads a policy value that is one string or a list of them.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*l = many
	return nil
}

// parsePolicy reads a policy document as IAM answers it: URL-encoded
// (RFC 3986) in AWS; moto may answer it plain.
func parsePolicy(doc string) (policyDoc, error) {
	s := strings.TrimSpace(doc)
	if !strings.HasPrefix(s, "{") {
		dec, err := url.PathUnescape(s)
		if err != nil {
			return policyDoc{}, fmt.Errorf("policy document: %w", err)
		}
		s = dec
	}
	var p policyDoc
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return policyDoc{}, fmt.Errorf("policy document: %w", err)
	}
	return p, nil
}

// matchesAction answers whether the statement's Action (or NotAction)
// covers action, with IAM's wildcards and case-insensitively.
func (st statement) matchesAction(action string) bool {
	if len(st.NotAction) > 0 {
		for _, p := range st.NotAction {
			if wildcardMatch(p, action) {
				return false
			}
		}
		return true
	}
	for _, p := range st.Action {
		if wildcardMatch(p, action) {
			return true
		}
	}
	return false
}

// wildcardMatch matches IAM's patterns: * is any run of characters, ? is
// one character, case-insensitively.
func wildcardMatch(pattern, s string) bool {
	return wildcardMatchFold(strings.ToLower(pattern), strings.ToLower(s))
}

func wildcardMatchFold(p, s string) bool {
	// Iterative matcher with backtracking to the last star.
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// decision is IAM's evaluation: an explicit Deny wins over any Allow; no
// Allow at all is an implicit deny.
type decision string

const (
	allowed      decision = "allowed"
	implicitDeny decision = "implicitDeny"
	explicitDeny decision = "explicitDeny"
)

// namedPolicy is a policy document and where it came from, for
// SimulatePrincipalPolicy's MatchedStatements.
type namedPolicy struct {
	id  string // policy name or ARN
	typ string // IAM's SourcePolicyType: role, aws-managed, user-managed, none
	doc policyDoc
}

// evaluateActions decides action against the policies' Effect and Action
// only: Resource and Condition are not evaluated (see the package doc).
func evaluateActions(policies []namedPolicy, action string) (decision, []namedPolicy) {
	var allows, denies []namedPolicy
	for _, p := range policies {
		for _, st := range p.doc.Statement {
			if !st.matchesAction(action) {
				continue
			}
			switch {
			case strings.EqualFold(st.Effect, "Deny"):
				denies = append(denies, p)
			case strings.EqualFold(st.Effect, "Allow"):
				allows = append(allows, p)
			}
		}
	}
	switch {
	case len(denies) > 0:
		return explicitDeny, denies
	case len(allows) > 0:
		return allowed, allows
	default:
		return implicitDeny, nil
	}
}

// arnParts splits arn:partition:service:region:account:resource.
type arnParts struct {
	service, account, resource string
}

func parseARN(s string) (arnParts, bool) {
	f := strings.SplitN(s, ":", 6)
	if len(f) != 6 || f[0] != "arn" {
		return arnParts{}, false
	}
	return arnParts{service: f[2], account: f[4], resource: f[5]}, true
}

// lastSegment is the name at the end of an IAM resource with a path:
// role/path/name → name.
func lastSegment(resource string) string {
	return resource[strings.LastIndex(resource, "/")+1:]
}

// principalMatches answers whether the trust statement's Principal names
// the caller (an ARN as sts:GetCallerIdentity answers it). Understood:
// "*", {"AWS": "*"}, an account id or its root ARN (any principal of that
// account), a role ARN (its assumed-role sessions) and a user ARN. Service
// and federated principals never match a caller with access keys.
func principalMatches(raw json.RawMessage, callerARN string) bool {
	if len(raw) == 0 {
		return false
	}
	var star string
	if json.Unmarshal(raw, &star) == nil {
		return star == "*"
	}
	var byType map[string]stringList
	if err := json.Unmarshal(raw, &byType); err != nil {
		return false
	}
	caller, ok := parseARN(callerARN)
	if !ok {
		return false
	}
	for _, p := range byType["AWS"] {
		if principalNames(p, caller) {
			return true
		}
	}
	return false
}

func principalNames(p string, caller arnParts) bool {
	if p == "*" {
		return true
	}
	if len(p) == 12 && strings.Trim(p, "0123456789") == "" {
		return p == caller.account
	}
	want, ok := parseARN(p)
	if !ok || want.account != caller.account {
		return false
	}
	kind, _, _ := strings.Cut(want.resource, "/")
	callerKind, callerRest, _ := strings.Cut(caller.resource, "/")
	switch {
	case want.resource == "root":
		return true
	case kind == "role":
		// assumed-role/NAME/SESSION is a session of role NAME.
		name, _, _ := strings.Cut(callerRest, "/")
		return callerKind == "assumed-role" && name == lastSegment(want.resource) ||
			callerKind == "role" && lastSegment(caller.resource) == lastSegment(want.resource)
	case kind == "user":
		return callerKind == "user" && lastSegment(caller.resource) == lastSegment(want.resource)
	default:
		return false
	}
}

// trustAllows evaluates a role's trust policy for sts:AssumeRole by
// callerARN with externalID ("" when none was given). Conditions are
// understood for the key sts:ExternalId with StringEquals and StringLike;
// a statement with any other condition does not apply (the harness cannot
// tell), and NotPrincipal statements do not apply either.
func trustAllows(p policyDoc, callerARN, externalID string) bool {
	allow := false
	for _, st := range p.Statement {
		if len(st.NotPrincipal) > 0 || !st.matchesAction("sts:AssumeRole") || !principalMatches(st.Principal, callerARN) {
			continue
		}
		if !trustConditions(st.Condition, externalID) {
			continue
		}
		switch {
		case strings.EqualFold(st.Effect, "Deny"):
			return false
		case strings.EqualFold(st.Effect, "Allow"):
			allow = true
		}
	}
	return allow
}

func trustConditions(cond map[string]map[string]stringList, externalID string) bool {
	for op, keys := range cond {
		for key, values := range keys {
			if !strings.EqualFold(key, "sts:ExternalId") {
				return false
			}
			if externalID == "" {
				return false
			}
			ok := false
			for _, v := range values {
				switch op {
				case "StringEquals":
					ok = ok || v == externalID
				case "StringLike":
					ok = ok || wildcardMatchCase(v, externalID)
				default:
					return false
				}
			}
			if !ok {
				return false
			}
		}
	}
	return true
}

// wildcardMatchCase is wildcardMatch without case folding (StringLike).
func wildcardMatchCase(pattern, s string) bool { return wildcardMatchFold(pattern, s) }
