//go:build tools

// Package tools pins the Kubernetes control plane the Kubernetes driver's
// tests run against: etcd, kube-apiserver, kube-scheduler and
// kube-controller-manager, built from the Go module proxy by `make
// kube-tools` into bin/ (once; the binaries are cached there). Every staging
// module k8s.io/kubernetes replaces with a path of its own repository is
// replaced here with the published module of the same minor release.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
