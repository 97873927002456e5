package awspolicy

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// parsed is a policy read back the way IAM reads it: Action and Resource
// may be a string or a list.
type parsed struct {
	Version   string
	Statement []struct {
		Sid       string
		Effect    string
		Principal map[string]string
		Action    json.RawMessage
		Resource  json.RawMessage
		Condition map[string]map[string]string
	}
}

func parse(t *testing.T, doc string) parsed {
	t.Helper()
	var p parsed
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("not a policy: %v\n%s", err, doc)
	}
	if p.Version != "2012-10-17" {
		t.Fatalf("Version = %q", p.Version)
	}
	if len(p.Statement) == 0 {
		t.Fatal("no statement")
	}
	for _, s := range p.Statement {
		if s.Effect != "Allow" {
			t.Errorf("statement %s: Effect %q", s.Sid, s.Effect)
		}
		if len(strings1(t, s.Action)) == 0 {
			t.Errorf("statement %s: no Action", s.Sid)
		}
	}
	return p
}

func strings1(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	if len(raw) == 0 {
		return nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		t.Fatalf("neither string nor list: %s", raw)
	}
	return many
}

func TestTrustPolicy(t *testing.T) {
	p := parse(t, TrustPolicy("arn:aws:iam::111122223333:role/rayplane-cp", "rayplane-abc"))
	if len(p.Statement) != 1 {
		t.Fatalf("%d statements", len(p.Statement))
	}
	s := p.Statement[0]
	if got := strings1(t, s.Action); !reflect.DeepEqual(got, []string{"sts:AssumeRole"}) {
		t.Errorf("Action = %v", got)
	}
	if s.Principal["AWS"] != "arn:aws:iam::111122223333:role/rayplane-cp" {
		t.Errorf("Principal = %v", s.Principal)
	}
	if want := map[string]map[string]string{"StringEquals": {"sts:ExternalId": "rayplane-abc"}}; !reflect.DeepEqual(s.Condition, want) {
		t.Errorf("Condition = %v", s.Condition)
	}
}

func TestTrustPolicyEscapes(t *testing.T) {
	// Values are JSON strings, never spliced text: a quote stays a quote.
	p := parse(t, TrustPolicy(`arn:aws:iam::1:role/"x`, `a"b`))
	if got := p.Statement[0].Condition["StringEquals"]["sts:ExternalId"]; got != `a"b` {
		t.Errorf("external id = %q", got)
	}
}

func TestTrustPrincipal(t *testing.T) {
	for in, want := range map[string]string{
		"arn:aws:sts::111122223333:assumed-role/cp/i-0123":  "arn:aws:iam::111122223333:role/cp",
		"arn:aws-cn:sts::111122223333:assumed-role/cp/sess": "arn:aws-cn:iam::111122223333:role/cp",
		"arn:aws:iam::111122223333:user/ops":                "arn:aws:iam::111122223333:user/ops",
		"arn:aws:iam::111122223333:role/path/cp":            "arn:aws:iam::111122223333:role/path/cp",
		"arn:aws:sts::111122223333:federated-user/x":        "arn:aws:sts::111122223333:federated-user/x",
	} {
		if got := TrustPrincipal(in); got != want {
			t.Errorf("TrustPrincipal(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPermissionsPolicyCoversExactlyTheCalls(t *testing.T) {
	for name, params := range map[string]Params{
		"full":    {Region: "eu-west-1", NodeRoleARN: "arn:aws:iam::111122223333:role/node", StorageLocation: "s3://logs-bucket/rayplane"},
		"minimal": {},
	} {
		t.Run(name, func(t *testing.T) {
			p := parse(t, PermissionsPolicy(params))
			var actions []string
			for _, s := range p.Statement {
				for _, a := range strings1(t, s.Action) {
					if strings.Contains(a, "*") {
						t.Errorf("statement %s: wildcard action %q", s.Sid, a)
					}
					actions = append(actions, a)
				}
				for _, r := range strings1(t, s.Resource) {
					if r == "*" && !strings.HasPrefix(s.Sid, "Describe") {
						if s.Sid != "PassTheNodeRoleToEC2" || params.NodeRoleARN != "" {
							t.Errorf("statement %s: Resource *", s.Sid)
						}
					}
				}
			}
			slices.Sort(actions)
			actions = slices.Compact(actions)
			want := ControlPlaneActions()
			if params.StorageLocation == "" {
				want = slices.DeleteFunc(slices.Clone(want), func(a string) bool { return a == "s3:ListBucket" })
			}
			if !reflect.DeepEqual(actions, want) {
				t.Errorf("actions %v\nwant    %v", actions, want)
			}
		})
	}
}

func statementBySid(t *testing.T, p parsed, sid string) (actions, resources []string, cond map[string]map[string]string) {
	t.Helper()
	for _, s := range p.Statement {
		if s.Sid == sid {
			return strings1(t, s.Action), strings1(t, s.Resource), s.Condition
		}
	}
	t.Fatalf("no statement %s", sid)
	return nil, nil, nil
}

func TestPermissionsPolicyConditions(t *testing.T) {
	p := parse(t, PermissionsPolicy(Params{Region: "eu-west-1", NodeRoleARN: "arn:aws:iam::111122223333:role/node", StorageLocation: "s3://logs-bucket/rayplane"}))
	for _, tc := range []struct {
		sid       string
		resources []string
		cond      map[string]map[string]string
	}{
		{"LaunchTaggedInstances", []string{"arn:aws:ec2:eu-west-1:*:instance/*"},
			map[string]map[string]string{"StringEquals": {"aws:RequestTag/rayplane-managed-by": "rayplane"}}},
		{"TagOnlyAtLaunch", []string{"arn:aws:ec2:eu-west-1:*:instance/*", "arn:aws:ec2:eu-west-1:*:volume/*"},
			map[string]map[string]string{"StringEquals": {"ec2:CreateAction": "RunInstances"}}},
		{"TerminateOwnInstances", []string{"arn:aws:ec2:eu-west-1:*:instance/*"},
			map[string]map[string]string{"StringEquals": {"aws:ResourceTag/rayplane-managed-by": "rayplane"}}},
		{"Describe", []string{"*"},
			map[string]map[string]string{"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}},
		{"PassTheNodeRoleToEC2", []string{"arn:aws:iam::111122223333:role/node"},
			map[string]map[string]string{"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}},
		{"VerifyInstanceProfile", []string{"arn:aws:iam::111122223333:instance-profile/*"}, nil},
		{"VerifyOwnPermissions", []string{"arn:aws:iam::111122223333:role/*"}, nil},
		{"VerifyStorageBucket", []string{"arn:aws:s3:::logs-bucket"}, nil},
		{"LaunchWithTheCloudsNetworkAndImage", []string{
			"arn:aws:ec2:eu-west-1::image/*", "arn:aws:ec2:eu-west-1:*:network-interface/*", "arn:aws:ec2:eu-west-1:*:security-group/*",
			"arn:aws:ec2:eu-west-1:*:spot-instances-request/*", "arn:aws:ec2:eu-west-1:*:subnet/*", "arn:aws:ec2:eu-west-1:*:volume/*"}, nil},
		{"LetEC2CreateTheSpotServiceLinkedRole", []string{"arn:aws:iam::111122223333:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"},
			map[string]map[string]string{"StringEquals": {"iam:AWSServiceName": "spot.amazonaws.com"}}},
	} {
		_, res, cond := statementBySid(t, p, tc.sid)
		if !reflect.DeepEqual(res, tc.resources) {
			t.Errorf("%s: Resource %v, want %v", tc.sid, res, tc.resources)
		}
		if !reflect.DeepEqual(cond, tc.cond) {
			t.Errorf("%s: Condition %v, want %v", tc.sid, cond, tc.cond)
		}
	}
	// Without a node role the role may pass any role, but only to EC2.
	p = parse(t, PermissionsPolicy(Params{}))
	_, res, cond := statementBySid(t, p, "PassTheNodeRoleToEC2")
	if !reflect.DeepEqual(res, []string{"*"}) || cond["StringEquals"]["iam:PassedToService"] != "ec2.amazonaws.com" {
		t.Errorf("PassRole without node role: %v %v", res, cond)
	}
	_, res, _ = statementBySid(t, p, "LaunchTaggedInstances")
	if !reflect.DeepEqual(res, []string{"arn:aws:ec2:*:*:instance/*"}) {
		t.Errorf("no region: %v", res)
	}
	// Other partitions.
	p = parse(t, PermissionsPolicy(Params{Region: "cn-north-1"}))
	if _, res, _ = statementBySid(t, p, "LaunchTaggedInstances"); res[0] != "arn:aws-cn:ec2:cn-north-1:*:instance/*" {
		t.Errorf("China: %v", res)
	}
}

// TestPermissionsPolicyScopesSimulationToItsOwnRole: with the cloud's
// role given, the role may simulate its own policies only, not those of
// every role of the account.
func TestPermissionsPolicyScopesSimulationToItsOwnRole(t *testing.T) {
	const own = "arn:aws:iam::111122223333:role/path/rayplane"
	p := parse(t, PermissionsPolicy(Params{Region: "eu-west-1", RoleARN: own}))
	if _, res, _ := statementBySid(t, p, "VerifyOwnPermissions"); !reflect.DeepEqual(res, []string{own}) {
		t.Errorf("SimulatePrincipalPolicy on %v, want only %s", res, own)
	}
	if _, res, _ := statementBySid(t, p, "VerifyInstanceProfile"); !reflect.DeepEqual(res, []string{"arn:aws:iam::111122223333:instance-profile/*"}) {
		t.Errorf("GetInstanceProfile on %v, want the role's account's profiles", res)
	}
	// GovCloud: the role's partition.
	p = parse(t, PermissionsPolicy(Params{Region: "us-gov-west-1", RoleARN: "arn:aws-us-gov:iam::111122223333:role/rp"}))
	if _, res, _ := statementBySid(t, p, "LetEC2CreateTheSpotServiceLinkedRole"); !strings.HasPrefix(res[0], "arn:aws-us-gov:iam::111122223333:role/aws-service-role/") {
		t.Errorf("GovCloud service-linked role: %v", res)
	}
}

// TestCallsMadeByAWS: the calls AWS makes on the driver's behalf name the
// driver's call they happen in, which the list has.
func TestCallsMadeByAWS(t *testing.T) {
	apis := map[string]bool{}
	for _, c := range ControlPlaneCalls {
		if c.Via == "" {
			apis[c.API] = true
		}
	}
	n := 0
	for _, c := range ControlPlaneCalls {
		if c.Via != "" {
			n++
			if !apis[c.Via] {
				t.Errorf("%s is made during %s, which the driver does not call", c.API, c.Via)
			}
		}
	}
	if n == 0 {
		t.Error("no call is marked as made by AWS (iam:CreateServiceLinkedRole for the Spot role)")
	}
}

func TestPoliciesAreDeterministic(t *testing.T) {
	params := Params{Region: "us-east-1", NodeRoleARN: "arn:aws:iam::111122223333:role/node", StorageLocation: "s3://b-1/x"}
	first := PermissionsPolicy(params)
	for range 50 {
		if PermissionsPolicy(params) != first {
			t.Fatal("PermissionsPolicy differs between calls")
		}
	}
	n1, _ := NodePolicy("s3://b-1/x", "us-east-1")
	for range 50 {
		if n, _ := NodePolicy("s3://b-1/x", "us-east-1"); n != n1 {
			t.Fatal("NodePolicy differs between calls")
		}
	}
}

func TestNodePolicy(t *testing.T) {
	for loc, want := range map[string]string{
		"s3://logs-bucket":              "arn:aws:s3:::logs-bucket/*",
		"s3://logs-bucket/rayplane/dev": "arn:aws:s3:::logs-bucket/rayplane/dev/*",
	} {
		doc, err := NodePolicy(loc, "eu-west-1")
		if err != nil {
			t.Fatalf("%s: %v", loc, err)
		}
		p := parse(t, doc)
		if len(p.Statement) != 1 {
			t.Fatalf("%s: %d statements", loc, len(p.Statement))
		}
		s := p.Statement[0]
		if a := strings1(t, s.Action); !reflect.DeepEqual(a, []string{"s3:PutObject"}) {
			t.Errorf("%s: Action %v", loc, a)
		}
		if r := strings1(t, s.Resource); !reflect.DeepEqual(r, []string{want}) {
			t.Errorf("%s: Resource %v, want %s", loc, r, want)
		}
	}
}

func TestNodePolicyPartition(t *testing.T) {
	for region, want := range map[string]string{
		"":              "arn:aws:s3:::logs-bucket/x/*",
		"us-east-1":     "arn:aws:s3:::logs-bucket/x/*",
		"cn-north-1":    "arn:aws-cn:s3:::logs-bucket/x/*",
		"us-gov-west-1": "arn:aws-us-gov:s3:::logs-bucket/x/*",
	} {
		doc, err := NodePolicy("s3://logs-bucket/x", region)
		if err != nil {
			t.Fatal(err)
		}
		if r := strings1(t, parse(t, doc).Statement[0].Resource); !reflect.DeepEqual(r, []string{want}) {
			t.Errorf("region %q: Resource %v, want %s", region, r, want)
		}
	}
}

func TestNodePolicyRefusesAnythingButS3(t *testing.T) {
	for _, loc := range []string{
		"", "logs-bucket", "gs://logs-bucket", "s3://", "s3://Logs", "s3://a", "s3://192.168.1.1",
		"s3://xn--bucket", "s3://b-1/../x", "s3://b-1/x/", "s3://b-1//x", "s3://b-1/x?y", "s3://b-1/*",
		"s3://b-1/x\"y", "file:///tmp/x",
	} {
		if doc, err := NodePolicy(loc, "us-east-1"); err == nil {
			t.Errorf("NodePolicy(%q) accepted: %s", loc, doc)
		}
	}
}

func TestControlPlaneActions(t *testing.T) {
	got := ControlPlaneActions()
	if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Errorf("not sorted and unique: %v", got)
	}
	for _, want := range []string{"ec2:RunInstances", "ec2:CreateTags", "ec2:TerminateInstances", "iam:PassRole", "s3:ListBucket"} {
		if !slices.Contains(got, want) {
			t.Errorf("missing %s", want)
		}
	}
	for _, c := range ControlPlaneCalls {
		if c.API == "" || c.Why == "" || !strings.Contains(c.Action, ":") {
			t.Errorf("incomplete call %+v", c)
		}
	}
}
