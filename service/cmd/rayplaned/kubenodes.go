package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"sync"

	rpapi "github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	kubedriver "github.com/rayplane/rayplane/internal/cloud/kubernetes"
)

// kubeClouds hands out the Kubernetes driver of each kubernetes cloud: one
// per cloud, so its client (connections, rate limiter) lasts across
// passes, built anew when the cloud's settings or token change. The token
// is the cloud's secret, decrypted by the reconciler for this call; only a
// hash of it is kept to tell a change.
type kubeClouds struct {
	log *slog.Logger

	mu      sync.Mutex
	drivers map[string]kubeEntry // by cloud id
}

type kubeEntry struct {
	key [32]byte // the settings and token the driver was built with
	d   *kubedriver.Driver
}

func newKubeClouds(log *slog.Logger) *kubeClouds {
	return &kubeClouds{log: log, drivers: map[string]kubeEntry{}}
}

func (k *kubeClouds) driverFor(_ context.Context, orgID string, c rpapi.Cloud, token string) (cloud.Driver, error) {
	if c.Kubernetes == nil {
		return nil, cloud.Errorf(cloud.Invalid, "driver", "the cloud has no kubernetes settings")
	}
	settings, _ := json.Marshal(struct {
		Storage string
		K       *rpapi.KubernetesCloud
		Token   string
	}{c.StorageLocation, c.Kubernetes, token})
	key := sha256.Sum256(settings)
	k.mu.Lock()
	defer k.mu.Unlock()
	if e, ok := k.drivers[c.ID]; ok && e.key == key {
		return e.d, nil
	}
	d, err := kubedriver.New(kubedriver.Config{
		OrgID: orgID, CloudID: c.ID, Cloud: *c.Kubernetes, Token: token,
		StorageLocation: c.StorageLocation, Logger: k.log,
	})
	if err != nil {
		return nil, &cloud.Error{Kind: cloud.Invalid, Op: "driver", Err: err}
	}
	k.drivers[c.ID] = kubeEntry{key: key, d: d}
	return d, nil
}
