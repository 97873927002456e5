package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

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
	log     *slog.Logger
	allowed []netip.Prefix // --kubernetes-allowed-networks

	drivers driverCache[*kubedriver.Driver]
}

func newKubeClouds(log *slog.Logger, allowed []netip.Prefix) *kubeClouds {
	return &kubeClouds{log: log, allowed: allowed}
}

// parseNetworks reads --kubernetes-allowed-networks: comma-separated CIDR
// prefixes.
func parseNetworks(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("--kubernetes-allowed-networks: %q is not a CIDR prefix like 10.0.0.0/8", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (k *kubeClouds) driverFor(_ context.Context, orgID string, c rpapi.Cloud, token string) (cloud.Driver, error) {
	if c.Kubernetes == nil {
		return nil, cloud.Errorf(cloud.Invalid, "driver", "the cloud has no kubernetes settings")
	}
	settings := struct {
		Storage string
		K       *rpapi.KubernetesCloud
		Token   string
	}{c.StorageLocation, c.Kubernetes, token}
	d, err := k.drivers.get(c.ID, settings, func() (*kubedriver.Driver, error) {
		return kubedriver.New(kubedriver.Config{
			OrgID: orgID, CloudID: c.ID, Cloud: *c.Kubernetes, Token: token,
			StorageLocation: c.StorageLocation, Logger: k.log, AllowedNetworks: k.allowed,
		})
	}, func(old *kubedriver.Driver) {
		// The replaced driver's connections go to the old server (maybe
		// one the tenant no longer names): close them. A call still using
		// it opens new ones and ends.
		old.Close()
	})
	if err != nil {
		return nil, &cloud.Error{Kind: cloud.Invalid, Op: "driver", Err: err}
	}
	return d, nil
}
