package kubetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// waitDeadline bounds the helpers' waits for the control plane to act.
const waitDeadline = time.Minute

// adminClientset is Admin for the harness's own use, without a test.
func (c *Cluster) adminClientset() (kubernetes.Interface, error) {
	return kubernetes.NewForConfig(c.Config(c.AdminToken))
}

// Namespace creates the namespace and deletes it at t.Cleanup. One that
// already exists fails the test: on a shared control plane that is another
// test's; NewNamespace makes a unique name. (Without the controller-manager,
// Nodes == 0, a deleted namespace stays Terminating with its contents; the
// name stays taken.)
func (c *Cluster) Namespace(t testing.TB, name string) {
	t.Helper()
	cs := c.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
	defer cancel()
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
		defer cancel()
		// Not waited for: its pods and secrets go in the background.
		_ = cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	})
}

// NewNamespace creates a namespace named after the test (lowercased, cut
// short, a random suffix), deleted at t.Cleanup, and answers its name.
func (c *Cluster) NewNamespace(t testing.TB) string {
	t.Helper()
	name := namespaceName(t.Name())
	c.Namespace(t, name)
	return name
}

func namespaceName(testName string) string {
	var b strings.Builder
	dash := true // no leading dash
	for _, r := range strings.ToLower(testName) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	base := strings.TrimRight(b.String(), "-")
	const maxBase = 63 - 1 - 8 // a label is ≤ 63; "-" and 8 hex digits follow
	if len(base) > maxBase {
		base = strings.TrimRight(base[:maxBase], "-")
	}
	if base == "" {
		base = "test"
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	return base + "-" + hex.EncodeToString(suffix)
}

// ServiceAccountToken makes the ServiceAccount sa in namespace, a Role
// named sa with exactly rules and a RoleBinding of it to sa (the Role is
// replaced when it exists, so a second call changes the grant), and answers
// a token for sa from the TokenRequest API (valid 24 h). It returns once the
// apiserver authenticates the token and its authorizer grants the first
// verb of every rule, so a request right after sees the grant.
func (c *Cluster) ServiceAccountToken(t testing.TB, namespace, sa string, rules []rbacv1.PolicyRule) string {
	t.Helper()
	cs := c.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
	defer cancel()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("kubetest: service account %s/%s: "+format, append([]any{namespace, sa}, args...)...)
	}

	_, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: sa},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		fail("create: %v", err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: sa}, Rules: rules}
	if _, err := cs.RbacV1().Roles(namespace).Create(ctx, role, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		_, err = cs.RbacV1().Roles(namespace).Update(ctx, role, metav1.UpdateOptions{})
		if err != nil {
			fail("update role: %v", err)
		}
	} else if err != nil {
		fail("create role: %v", err)
	}
	_, err = cs.RbacV1().RoleBindings(namespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: sa},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: sa},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: namespace}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		fail("create role binding: %v", err)
	}
	expiry := int64(24 * 60 * 60)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		fail("token request: %v", err)
	}
	token := tr.Status.Token

	// The authorizer reads Roles and RoleBindings from informers: a grant
	// is visible a moment after it is written. Wait until it is.
	user := "system:serviceaccount:" + namespace + ":" + sa
	err = c.poll(ctx, "grant to "+user, func(ctx context.Context) (bool, error) {
		for _, rule := range rules {
			attrs, ok := firstAttributes(namespace, rule)
			if !ok {
				continue
			}
			sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
				Spec: authorizationv1.SubjectAccessReviewSpec{
					User:               user,
					Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
					ResourceAttributes: attrs,
				},
			}, metav1.CreateOptions{})
			if err != nil {
				return false, err
			}
			if !sar.Status.Allowed {
				return false, fmt.Errorf("%s %s not granted yet", attrs.Verb, attrs.Resource)
			}
		}
		return true, nil
	})
	if err != nil {
		fail("%v", err)
	}
	// And the token authenticates (it names the ServiceAccount, which the
	// authenticator looks up).
	tc := c.Client(t, token)
	err = c.poll(ctx, "token of "+user, func(ctx context.Context) (bool, error) {
		r, err := tc.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		if r.Status.UserInfo.Username != user {
			return false, fmt.Errorf("token authenticates as %q", r.Status.UserInfo.Username)
		}
		return true, nil
	})
	if err != nil {
		fail("%v", err)
	}
	return token
}

// firstAttributes answers the request the rule's first group, resource,
// verb (and resource name, if the rule names some) describe.
func firstAttributes(namespace string, rule rbacv1.PolicyRule) (*authorizationv1.ResourceAttributes, bool) {
	if len(rule.Verbs) == 0 || len(rule.Resources) == 0 {
		return nil, false
	}
	attrs := &authorizationv1.ResourceAttributes{
		Namespace: namespace,
		Verb:      rule.Verbs[0],
		Resource:  rule.Resources[0],
	}
	if len(rule.APIGroups) > 0 {
		attrs.Group = rule.APIGroups[0]
	}
	if resource, sub, ok := strings.Cut(attrs.Resource, "/"); ok {
		attrs.Resource, attrs.Subresource = resource, sub
	}
	if len(rule.ResourceNames) > 0 {
		attrs.Name = rule.ResourceNames[0]
	}
	return attrs, true
}
