// Package kubetest runs a real Kubernetes control plane for tests: etcd and
// kube-apiserver (v1.37.2, etcd 3.7), and with Options.Nodes > 0 also
// kube-scheduler, kube-controller-manager and kwok with fake nodes, all
// from the binaries `make kube-tools` builds into bin/kube (or
// $RAYPLANE_KUBE_BIN). It is for tests only and must never be imported by
// production code.
//
// What runs:
//   - etcd on unix sockets in the cluster's directory (no port, fsync off);
//   - kube-apiserver on a free loopback port (a start that loses its port
//     to another process is retried), serving a certificate of a CA made
//     for this cluster (Cluster.CAPEM); a static admin token in
//     system:masters (Cluster.AdminToken); RBAC authorization;
//     service-account keys, so the TokenRequest API works
//     (ServiceAccountToken); no ServiceAccount admission (pods need no
//     ServiceAccount object); no endpoint reconciler; no priority and
//     fairness;
//   - with Nodes > 0: kube-scheduler (binds pods), kube-controller-manager
//     (garbage collection of ownerReferences, namespace deletion, node
//     lifecycle, default ServiceAccounts, …) and kwok managing the nodes
//     annotated kwok.x-k8s.io/node=fake with its stock fast stages: a node
//     becomes Ready, a pod bound to it Running with an IP from
//     10.0.1.0/24, a deleted pod goes at once. No container runs.
//
// Start starts a control plane for one test, stopped at t.Cleanup. Shared
// answers one control plane per Options for the whole test binary; a
// package using it stops it with `func TestMain(m *testing.M) {
// kubetest.Main(m) }`. Every process has its own process group and is
// stopped with SIGTERM, then SIGKILL; on Linux it is also killed when the
// test binary dies without its cleanups. Processes' logs are <Dir>/<name>.log;
// their tails are logged when a start fails or the test failed. Missing
// binaries fail the test naming `make kube-tools`: never a skip.
package kubetest
