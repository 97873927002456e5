package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/kubernetes/kuberbac"
)

// The checks of Verify, as a failure names them.
const (
	CheckAPIServer   = "api server" // the way to it: an address not allowed, a redirect
	CheckToken       = "token"
	CheckPermissions = "permissions"
	CheckImage       = "image"
	CheckNamespace   = "namespace"
	CheckPodShapes   = "instance types"
)

// VerifyError lists every failed check of one verification. It is the Err
// of the *cloud.Error Verify answers. It is not cloud.VerifyError: its text
// is bounded, each problem and in all, for the API server's words in it
// may be anything.
type VerifyError struct{ Failures []cloud.Failure }

// maxVerifyText bounds VerifyError's text: it becomes the cloud's
// status_reason.
const maxVerifyText = 4096

func (e *VerifyError) Error() string {
	n := "1 check"
	if len(e.Failures) > 1 {
		n = fmt.Sprintf("%d checks", len(e.Failures))
	}
	var b strings.Builder
	b.WriteString(n + " failed: ")
	for i, f := range e.Failures {
		part := f.Check + ": " + boundedMessage(f.Problem)
		if i > 0 {
			part = "; " + part
		}
		if i > 0 && b.Len()+len(part) > maxVerifyText {
			fmt.Fprintf(&b, "; and %d more", len(e.Failures)-i)
			break
		}
		b.WriteString(part)
	}
	return b.String()
}

// Verify checks that:
//  1. the API server accepts the token;
//  2. the token may do every request of kuberbac.Rules in the namespace,
//     asked of the API server itself (SelfSubjectAccessReview, which every
//     authenticated user may create), naming each one it may not ("cannot
//     create pods");
//  3. the cloud has an image;
//  4. the namespace exists and admits a pod of every declared shape: a
//     server-side dry run of the pod Launch would create, which runs
//     admission (LimitRanges, Pod Security, webhooks that support dry runs)
//     and stores nothing. A list would not do: listing pods of a namespace
//     that does not exist answers an empty list.
//
// It answers nil or one *cloud.Error whose Err is a *VerifyError naming
// every failed check: of kind auth when the token is refused or may do none
// of the requests, transient when every failure was a timeout or
// throttling, invalid otherwise.
func (d *Driver) Verify(ctx context.Context) error {
	var v cloud.Verification
	allowed := map[kuberbac.Rule]bool{}
	denied := 0
	for _, r := range kuberbac.Rules {
		ok, err := d.may(ctx, r)
		switch {
		case apierrors.IsUnauthorized(err):
			v.Fail(CheckToken, cloud.Auth, "the API server %s does not accept the token: %s", d.cfg.Cloud.APIServer, d.brief(err))
			return result(&v, true)
		case errors.As(err, new(*AddressNotAllowedError)) || errors.As(err, new(*RedirectError)):
			v.Fail(CheckAPIServer, cloud.Invalid, "%s", d.brief(err))
			return result(&v, false) // no request will get through: one failure says it
		case err != nil:
			v.Fail(CheckPermissions, kindOf(err), "could not ask whether the token may %s: %s", ruleText(r), d.brief(err))
			if kindOf(err) == cloud.Auth {
				return result(&v, true) // no review will work: one failure says it
			}
		case !ok:
			denied++
			v.Fail(CheckPermissions, cloud.Invalid, "the token cannot %s in namespace %s (%s)", ruleText(r), d.ns, r.Why)
		default:
			allowed[r] = true
		}
	}
	if d.cfg.Cloud.Image == "" {
		v.Fail(CheckImage, cloud.Invalid, "the cloud has no image: clusters that set no runtime.image cannot start nodes")
	}
	if mayCreatePods(allowed) {
		d.verifyPodShapes(ctx, &v)
	}
	if denied == len(kuberbac.Rules) {
		return result(&v, true)
	}
	return result(&v, false)
}

// mayCreatePods reports whether the reviews allowed creating pods.
func mayCreatePods(allowed map[kuberbac.Rule]bool) bool {
	for r, ok := range allowed {
		if ok && r.APIGroup == "" && r.Resource == "pods" && r.Verb == "create" {
			return true
		}
	}
	return false
}

// ruleText is a rule as a failure names it: "create pods".
func ruleText(r kuberbac.Rule) string {
	if r.APIGroup == "" {
		return r.Verb + " " + r.Resource
	}
	return r.Verb + " " + r.Resource + "." + r.APIGroup
}

// may asks the API server whether the token may do r in the namespace.
func (d *Driver) may(ctx context.Context, r kuberbac.Rule) (bool, error) {
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: d.ns, Verb: r.Verb, Group: r.APIGroup, Resource: r.Resource},
	}}
	out, err := d.client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return false, d.clean(err)
	}
	return out.Status.Allowed && !out.Status.Denied, nil
}

// verifyPodShapes dry-runs the creation of a pod of every declared shape.
func (d *Driver) verifyPodShapes(ctx context.Context, v *cloud.Verification) {
	for _, t := range d.types {
		req := cloud.LaunchRequest{NodeID: "verify", InstanceType: t.Name}
		labels, err := d.nodeLabels(req)
		if err != nil {
			v.Fail(CheckPodShapes, cloud.Invalid, "instance type %s: %v", t.Name, err)
			continue
		}
		image := d.cfg.Cloud.Image
		if image == "" {
			image = "rayplane.invalid/verify" // the image check says it is missing
		}
		pod := d.pod(req, t, image, labels)
		pod.GenerateName, pod.Name = "rp-verify-", ""
		_, err = d.client.CoreV1().Pods(d.ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		err = d.clean(err) // before kindOf: an answer that is not a Status must not choose the kind by its words
		switch k := kindOf(err); {
		case err == nil:
		case apierrors.IsNotFound(err):
			v.Fail(CheckNamespace, cloud.Invalid, "namespace %s does not exist: %s", d.ns, d.brief(err))
			return
		case k == cloud.Quota:
			// The namespace's quota is used now; it may not be when
			// nodes launch. Launches answer it.
			d.log.Info("verification: the namespace's quota refuses a pod now", logInstanceType, t.Name, logErr, d.brief(err))
		case strings.Contains(err.Error(), "does not support dry run"):
			// A webhook with side effects: Launch will find out.
			d.log.Info("verification: a webhook does not support dry runs; pod shape unchecked", logInstanceType, t.Name, logErr, d.brief(err))
			return
		case k == cloud.Auth:
			return // the permissions check names it
		default:
			v.Fail(CheckPodShapes, k, "instance type %s: the namespace refuses its pod: %s", t.Name, d.brief(err))
			if k == cloud.Transient {
				return
			}
		}
	}
}

// result answers v's error, or nil: as cloud.Verification.Result, with
// this package's bounded VerifyError.
func result(v *cloud.Verification, authFailed bool) error {
	if len(v.Failures) == 0 {
		return nil
	}
	return &cloud.Error{Kind: v.Kind(authFailed), Op: "verify", Err: &VerifyError{Failures: v.Failures}}
}
