package awstest

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// iamReader reads roles, policies, images and instance types from moto
// itself, as the harness.
type iamReader struct {
	raw string
	iam *iam.Client
	ec2 *ec2.Client
}

func newIAMReader(raw string) *iamReader {
	cfg := rawConfig(raw, AccessKey, SecretKey, "")
	return &iamReader{raw: raw, iam: iam.NewFromConfig(cfg), ec2: ec2.NewFromConfig(cfg)}
}

// rawConfig is an SDK config that talks to moto directly with the given
// credentials (moto does not check signatures; it tells identities apart
// by access key id).
func rawConfig(endpoint, key, secret, session string) awssdk.Config {
	return awssdk.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider(key, secret, session),
		BaseEndpoint: awssdk.String(endpoint),
	}
}

// callerARN asks moto who an access key (and session token) is.
func (r *iamReader) callerARN(ctx context.Context, accessKey, session string) (string, error) {
	client := sts.NewFromConfig(rawConfig(r.raw, accessKey, "x", session))
	out, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return "", fmt.Errorf("get caller identity of %s: %w", accessKey, err)
	}
	return awssdk.ToString(out.Arn), nil
}

var errNoSuchRole = errors.New("no such role")

func (r *iamReader) role(ctx context.Context, name string) (*iamtypes.Role, error) {
	out, err := r.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: &name})
	var nse *iamtypes.NoSuchEntityException
	if errors.As(err, &nse) {
		return nil, errNoSuchRole
	}
	if err != nil {
		return nil, fmt.Errorf("get role %s: %w", name, err)
	}
	return out.Role, nil
}

// rolePolicies reads a role's inline and attached managed policies.
func (r *iamReader) rolePolicies(ctx context.Context, name string) ([]namedPolicy, error) {
	var out []namedPolicy
	inline := iam.NewListRolePoliciesPaginator(r.iam, &iam.ListRolePoliciesInput{RoleName: &name})
	for inline.HasMorePages() {
		page, err := inline.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list role policies of %s: %w", name, err)
		}
		for _, pn := range page.PolicyNames {
			got, err := r.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: &name, PolicyName: &pn})
			if err != nil {
				return nil, fmt.Errorf("get role policy %s of %s: %w", pn, name, err)
			}
			doc, err := parsePolicy(awssdk.ToString(got.PolicyDocument))
			if err != nil {
				return nil, fmt.Errorf("role policy %s of %s: %w", pn, name, err)
			}
			out = append(out, namedPolicy{id: pn, typ: "role", doc: doc})
		}
	}
	attached := iam.NewListAttachedRolePoliciesPaginator(r.iam, &iam.ListAttachedRolePoliciesInput{RoleName: &name})
	for attached.HasMorePages() {
		page, err := attached.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list attached policies of %s: %w", name, err)
		}
		for _, ap := range page.AttachedPolicies {
			pol, err := r.iam.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: ap.PolicyArn})
			if err != nil {
				return nil, fmt.Errorf("get policy %s: %w", awssdk.ToString(ap.PolicyArn), err)
			}
			ver, err := r.iam.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: ap.PolicyArn, VersionId: pol.Policy.DefaultVersionId})
			if err != nil {
				return nil, fmt.Errorf("get policy version %s: %w", awssdk.ToString(ap.PolicyArn), err)
			}
			doc, err := parsePolicy(awssdk.ToString(ver.PolicyVersion.Document))
			if err != nil {
				return nil, fmt.Errorf("policy %s: %w", awssdk.ToString(ap.PolicyArn), err)
			}
			typ := "user-managed"
			if strings.HasPrefix(awssdk.ToString(ap.PolicyArn), "arn:aws:iam::aws:") {
				typ = "aws-managed"
			}
			out = append(out, namedPolicy{id: awssdk.ToString(ap.PolicyArn), typ: typ, doc: doc})
		}
	}
	return out, nil
}

var (
	sessionNameRE = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
	externalIDRE  = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
	roleARNRE     = regexp.MustCompile(`^arn:aws:iam::\d{12}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}$`)
)

// assumeRole enforces what moto does not: the role exists, its trust
// policy lets the caller assume it, with the external id its condition
// asks for, and the session name and duration are valid. Then moto
// answers the credentials, and the front remembers whose they are.
func (f *front) assumeRole(w *statusWriter, req *request) {
	ctx := req.r.Context()
	p := req.params
	roleARN, session, externalID := p.Get("RoleArn"), p.Get("RoleSessionName"), p.Get("ExternalId")
	invalid := func(msg string) { queryError(w, "sts", http.StatusBadRequest, "ValidationError", msg) }
	if !sessionNameRE.MatchString(session) {
		invalid(fmt.Sprintf("1 validation error detected: Value '%s' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and have length between 2 and 64", session))
		return
	}
	if _, given := p["ExternalId"]; given && (len(externalID) < 2 || len(externalID) > 1224 || !externalIDRE.MatchString(externalID)) {
		invalid("1 validation error detected: Value at 'externalId' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@:\\/-]* and have length between 2 and 1224")
		return
	}
	if !roleARNRE.MatchString(roleARN) {
		invalid(fmt.Sprintf("%s is invalid", roleARN))
		return
	}
	duration := 3600
	if d := p.Get("DurationSeconds"); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 900 {
			invalid(fmt.Sprintf("1 validation error detected: Value '%s' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900", d))
			return
		}
		duration = n
	}
	caller, err := f.iam.callerARN(ctx, req.accessKey, req.session)
	if err != nil {
		f.internalError(w, req, err)
		return
	}
	denied := func() {
		queryError(w, "sts", http.StatusForbidden, "AccessDenied",
			fmt.Sprintf("User: %s is not authorized to perform: sts:AssumeRole on resource: %s", caller, roleARN))
	}
	arn, _ := parseARN(roleARN)
	role, err := f.iam.role(ctx, lastSegment(arn.resource))
	if errors.Is(err, errNoSuchRole) || err == nil && awssdk.ToString(role.Arn) != roleARN {
		denied()
		return
	}
	if err != nil {
		f.internalError(w, req, err)
		return
	}
	trust, err := parsePolicy(awssdk.ToString(role.AssumeRolePolicyDocument))
	if err != nil {
		f.internalError(w, req, fmt.Errorf("trust policy of %s: %w", roleARN, err))
		return
	}
	if !trustAllows(trust, caller, externalID) {
		denied()
		return
	}
	if max := int(awssdk.ToInt32(role.MaxSessionDuration)); max > 0 && duration > max {
		invalid("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
		return
	}
	a, err := f.forward(req)
	if err != nil {
		f.internalError(w, req, fmt.Errorf("forward to moto: %w", err))
		return
	}
	if a.status == http.StatusOK {
		var resp struct {
			AccessKeyID string `xml:"AssumeRoleResult>Credentials>AccessKeyId"`
		}
		if err := xml.Unmarshal(a.body, &resp); err != nil || resp.AccessKeyID == "" {
			f.internalError(w, req, fmt.Errorf("read moto's AssumeRole answer: %v", err))
			return
		}
		f.mu.Lock()
		f.roles[resp.AccessKeyID] = roleARN
		f.mu.Unlock()
	}
	a.write(w)
}

// simulateResponse is IAM's SimulatePrincipalPolicy answer, in the shape
// the SDK's awsquery deserializer reads.
type simulateResponse struct {
	XMLName     xml.Name         `xml:"SimulatePrincipalPolicyResponse"`
	Xmlns       string           `xml:"xmlns,attr"`
	IsTruncated bool             `xml:"SimulatePrincipalPolicyResult>IsTruncated"`
	Results     []simulateResult `xml:"SimulatePrincipalPolicyResult>EvaluationResults>member"`
	RequestID   string           `xml:"ResponseMetadata>RequestId"`
}

type simulateResult struct {
	EvalActionName   string             `xml:"EvalActionName"`
	EvalResourceName string             `xml:"EvalResourceName"`
	EvalDecision     string             `xml:"EvalDecision"`
	Matched          []matchedStatement `xml:"MatchedStatements>member"`
}

type matchedStatement struct {
	SourcePolicyID   string `xml:"SourcePolicyId"`
	SourcePolicyType string `xml:"SourcePolicyType"`
}

// simulatePrincipalPolicy answers iam:SimulatePrincipalPolicy for a role
// (moto has no such operation): each action is decided against the role's
// inline and attached policies and any PolicyInputList, by Effect and
// Action only.
func (f *front) simulatePrincipalPolicy(w *statusWriter, req *request) {
	ctx := req.r.Context()
	p := req.params
	source := p.Get("PolicySourceArn")
	arn, ok := parseARN(source)
	if !ok || arn.service != "iam" || !strings.HasPrefix(arn.resource, "role/") {
		queryError(w, "iam", http.StatusBadRequest, "InvalidInput",
			fmt.Sprintf("awstest simulates roles only; PolicySourceArn %q is not a role ARN", source))
		return
	}
	actions := memberList(p, "ActionNames")
	if len(actions) == 0 {
		queryError(w, "iam", http.StatusBadRequest, "ValidationError",
			"1 validation error detected: Value null at 'actionNames' failed to satisfy constraint: Member must not be null")
		return
	}
	name := lastSegment(arn.resource)
	role, err := f.iam.role(ctx, name)
	if errors.Is(err, errNoSuchRole) || err == nil && awssdk.ToString(role.Arn) != source {
		queryError(w, "iam", http.StatusNotFound, "NoSuchEntity", fmt.Sprintf("The role with name %s cannot be found.", name))
		return
	}
	if err != nil {
		f.internalError(w, req, err)
		return
	}
	policies, err := f.iam.rolePolicies(ctx, name)
	if err != nil {
		f.internalError(w, req, err)
		return
	}
	for i, doc := range memberList(p, "PolicyInputList") {
		pd, err := parsePolicy(doc)
		if err != nil {
			queryError(w, "iam", http.StatusBadRequest, "MalformedPolicyDocument", err.Error())
			return
		}
		policies = append(policies, namedPolicy{id: fmt.Sprintf("PolicyInputList.%d", i+1), typ: "none", doc: pd})
	}
	resp := simulateResponse{Xmlns: namespaces["iam"], RequestID: requestID()}
	for _, action := range actions {
		d, matched := evaluateActions(policies, action)
		r := simulateResult{EvalActionName: action, EvalResourceName: "*", EvalDecision: string(d)}
		for _, m := range matched {
			r.Matched = append(r.Matched, matchedStatement{SourcePolicyID: m.id, SourcePolicyType: m.typ})
		}
		resp.Results = append(resp.Results, r)
	}
	body, err := xml.Marshal(resp)
	if err != nil {
		f.internalError(w, req, err)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// memberList reads a query-protocol list: Name.member.1, Name.member.2, …
func memberList(p map[string][]string, name string) []string {
	type item struct {
		n int
		v string
	}
	var items []item
	prefix := name + ".member."
	for k, v := range p {
		if !strings.HasPrefix(k, prefix) || len(v) == 0 {
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(k, prefix))
		if err != nil {
			continue
		}
		items = append(items, item{n, v[0]})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].n < items[j].n })
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.v
	}
	return out
}
