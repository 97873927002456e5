package awstest

import "testing"

func TestWildcardMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, action string
		want            bool
	}{
		{"ec2:*", "ec2:RunInstances", true},
		{"ec2:Describe*", "ec2:DescribeInstances", true},
		{"ec2:Describe*", "ec2:RunInstances", false},
		{"*", "s3:ListBucket", true},
		{"EC2:runinstances", "ec2:RunInstances", true},
		{"ec2:RunInstance", "ec2:RunInstances", false},
		{"ec2:Run?nstances", "ec2:RunInstances", true},
		{"iam:*Role*", "iam:PassRole", true},
		{"iam:*Role*", "iam:GetInstanceProfile", false},
		{"s3:*Object", "s3:PutObject", true},
		{"s3:*Object", "s3:PutObjectAcl", false},
	} {
		if got := wildcardMatch(tc.pattern, tc.action); got != tc.want {
			t.Errorf("wildcardMatch(%q, %q) = %v, want %v", tc.pattern, tc.action, got, tc.want)
		}
	}
}

func TestTrustAllows(t *testing.T) {
	const me = "arn:aws:sts::123456789012:user/moto"
	for _, tc := range []struct {
		name, policy, caller, externalID string
		want                             bool
	}{
		{"external id list", `{"Statement":{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::123456789012:user/moto"]},
			"Action":["sts:AssumeRole"],"Condition":{"StringEquals":{"sts:ExternalId":["a1","b2"]}}}}`, me, "b2", true},
		{"external id wrong", `{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/moto"},
			"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"a1"}}}}`, me, "a2", false},
		{"deny wins", `{"Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:*"},
			{"Effect":"Deny","Principal":{"AWS":"123456789012"},"Action":"sts:AssumeRole"}]}`, me, "", false},
		{"role principal names its sessions", `{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/path/cp"},
			"Action":"sts:AssumeRole"}}`, "arn:aws:sts::123456789012:assumed-role/cp/s1", "", true},
		{"other account", `{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::210987654321:root"},
			"Action":"sts:AssumeRole"}}`, me, "", false},
		{"service principal", `{"Statement":{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},
			"Action":"sts:AssumeRole"}}`, me, "", false},
		{"unknown condition does not apply", `{"Statement":{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole",
			"Condition":{"Bool":{"aws:MultiFactorAuthPresent":"true"}}}}`, me, "", false},
		{"other action", `{"Statement":{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRoleWithSAML"}}`, me, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parsePolicy(tc.policy)
			if err != nil {
				t.Fatal(err)
			}
			if got := trustAllows(p, tc.caller, tc.externalID); got != tc.want {
				t.Errorf("trustAllows = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParsePolicyURLEncoded(t *testing.T) {
	p, err := parsePolicy("%7B%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22ec2%3A%2A%22%7D%5D%7D")
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := evaluateActions([]namedPolicy{{doc: p}}, "ec2:RunInstances"); d != allowed {
		t.Errorf("decision %s, want allowed", d)
	}
}
