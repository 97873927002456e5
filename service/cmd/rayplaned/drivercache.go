package main

import (
	"crypto/sha256"
	"encoding/json"
	"sync"
)

// driverCache keeps one driver per cloud, so its state (credentials,
// connections, memory of capacity errors) lasts across reconcile passes,
// and builds it anew when the cloud's settings change. Settings are kept
// only as a hash: they may hold a secret.
type driverCache[D any] struct {
	mu      sync.Mutex
	drivers map[string]cachedDriver[D] // by cloud id
}

type cachedDriver[D any] struct {
	key [32]byte // hash of the settings the driver was built with
	d   D
}

// get answers the cloud's driver for settings, building it with build when
// there is none or the settings changed; replaced, when not nil, is given a
// driver that was built for older settings.
func (c *driverCache[D]) get(cloudID string, settings any, build func() (D, error), replaced func(D)) (D, error) {
	b, _ := json.Marshal(settings)
	key := sha256.Sum256(b)
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.drivers[cloudID]
	if ok && e.key == key {
		return e.d, nil
	}
	d, err := build()
	if err != nil {
		return d, err
	}
	if ok && replaced != nil {
		replaced(e.d)
	}
	if c.drivers == nil {
		c.drivers = map[string]cachedDriver[D]{}
	}
	c.drivers[cloudID] = cachedDriver[D]{key: key, d: d}
	return d, nil
}
