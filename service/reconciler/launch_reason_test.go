package reconciler

import (
	"context"
	"strings"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/service"
)

// TestLaunchFailureReasons: a local driver's failure is about the
// operator's host and names its paths, so the tenant reads a summary and
// the operator's log the whole error; another cloud's failure comes from
// the tenant's own account and is shown as it is.
func TestLaunchFailureReasons(t *testing.T) {
	const detail = "start agent /srv/rayplane/bin/rayplaned: permission denied"
	h := newHarness(t)
	localID, local := h.newCloud("local", nil)
	aws := service.NewCloud(api.CloudSpec{Name: "aws", Provider: api.ProviderAWS, Region: "us-east-1", StorageLocation: "s3://bucket/logs",
		AWS: &api.AWSCloud{RoleARN: "arn:aws:iam::123456789012:role/r", SubnetIDs: []string{"subnet-0123456789abcdef0"}, ImageID: "ami-0123456789abcdef0"}}, h.now())
	if err := h.st.Update(h.ctx, func(tx service.Tx) error { return tx.Org(h.org).CreateCloud(h.ctx, aws) }); err != nil {
		t.Fatal(err)
	}
	remote := newFakeCloud()
	h.clouds[aws.ID] = remote
	for _, f := range []*fakeCloud{local, remote} {
		f.setFault(func(_ context.Context, op, _ string) error {
			if op == "launch" {
				return cloud.Errorf(cloud.Invalid, "launch", "%s", detail)
			}
			return nil
		})
	}
	onLocal, onAWS := h.newCluster("on-local", localID), h.newCluster("on-aws", aws.ID)
	h.newReconciler(h.st, nil)
	h.run()

	errored := func(c api.Cluster, _ []api.Node) bool { return c.Status == api.ClusterErrored }
	c, nodes := h.waitFor("the local cluster to fail", onLocal.ID, errored)
	shown := []string{c.StatusReason}
	for _, n := range nodes {
		shown = append(shown, n.StatusReason)
	}
	for _, e := range h.events(onLocal.ID) {
		shown = append(shown, e.Message)
	}
	for _, s := range shown {
		if strings.Contains(s, "/srv/rayplane") {
			t.Errorf("a tenant reads the server's path: %q", s)
		}
	}
	if !strings.Contains(c.StatusReason, "the control plane's local data plane cannot start nodes; its operator's log says why") {
		t.Errorf("local cluster's reason: %q", c.StatusReason)
	}
	if !strings.Contains(h.logs.String(), detail) {
		t.Errorf("the operator's log lacks the driver's error:\n%s", tail(h.logs.String(), 2000))
	}

	c, _ = h.waitFor("the aws cluster to fail", onAWS.ID, errored)
	if !strings.Contains(c.StatusReason, detail) {
		t.Errorf("aws cluster's reason %q lacks its cloud's answer", c.StatusReason)
	}
}
