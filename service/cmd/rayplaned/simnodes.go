package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	rpapi "github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/sim"
	"github.com/rayplane/rayplane/service"
)

// simClouds hands out the driver of each sim cloud. Where the fleet runs
// and its token are the operator's settings (--sim-fleet-url,
// --sim-fleet-token-file), never a tenant's: a tenant declares shapes,
// prices and capacity only. Which organizations may declare sim clouds is
// --sim-orgs.
type simClouds struct {
	url, token string
	policy     orgPolicy
	names      *orgNames
	hc         *http.Client
	log        *slog.Logger

	drivers driverCache[*sim.Driver]
}

func setupSim(cfg serveConfig, st service.Store, log *slog.Logger) (*simClouds, error) {
	policy, err := parseOrgPolicy("sim-orgs", cfg.simOrgs)
	if err != nil {
		return nil, err
	}
	s := &simClouds{url: strings.TrimSpace(cfg.simFleetURL), policy: policy, names: &orgNames{st: st}, log: log,
		hc: &http.Client{
			Transport:     &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}}
	if s.url == "" {
		return s, nil
	}
	if cfg.simFleetTokenFile == "" {
		return nil, fmt.Errorf("--sim-fleet-url needs --sim-fleet-token-file: the fleet's token")
	}
	b, err := os.ReadFile(cfg.simFleetTokenFile)
	if err != nil {
		return nil, fmt.Errorf("--sim-fleet-token-file: %w", err)
	}
	if s.token = strings.TrimSpace(string(b)); s.token == "" || strings.ContainsFunc(s.token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, fmt.Errorf("--sim-fleet-token-file %s: must hold one token without spaces", cfg.simFleetTokenFile)
	}
	if _, err := sim.New(sim.Config{FleetURL: s.url}); err != nil {
		return nil, fmt.Errorf("--sim-fleet-url: %w", err)
	}
	return s, nil
}

func (s *simClouds) driverFor(ctx context.Context, orgID string, c rpapi.Cloud) (cloud.Driver, error) {
	if c.Sim == nil {
		return nil, cloud.Errorf(cloud.Invalid, "driver", "the cloud has no sim settings")
	}
	name, err := s.names.name(ctx, orgID)
	if err != nil {
		return nil, err // transient: the store
	}
	if !s.policy.allows(name) {
		return nil, cloud.Errorf(cloud.Invalid, "driver", "this control plane's operator does not allow organization %s to use sim clouds (--sim-orgs)", name)
	}
	settings := struct {
		URL, OrgID string
		Sim        *rpapi.SimCloud
	}{s.url, orgID, c.Sim}
	return s.drivers.get(c.ID, settings, func() (*sim.Driver, error) {
		return sim.New(sim.Config{FleetURL: s.url, Token: s.token, CloudID: c.ID, OrgID: orgID, Cloud: *c.Sim, HTTPClient: s.hc})
	}, nil)
}
