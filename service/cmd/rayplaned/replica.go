package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/reconciler"
)

// replica is what a serve shares with the other replicas of its store: a
// store that offers leases and a bus (PostgreSQL) makes every serve a
// replica; SQLite, one process behind the data directory's lock, does not.
type replica struct {
	leases service.Leases
	bus    service.Bus
	holder string // unique per process: host, pid and a random part
}

func replicaOf(st service.Store) *replica {
	l, ok1 := st.(service.Leases)
	b, ok2 := st.(service.Bus)
	if !ok1 || !ok2 {
		return nil
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	return &replica{leases: l, bus: b, holder: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(r[:]))}
}

// listen runs the bus until ctx ends: other replicas' cache invalidations
// (the cache serves nothing while the bus is not heard) and requests to
// pass over clusters this replica may hold.
func (r *replica) listen(ctx context.Context, cache *service.Cache, rec *reconciler.Reconciler, log *slog.Logger) {
	var wg sync.WaitGroup
	wg.Go(func() {
		err := r.bus.Listen(ctx, service.BusCache, cache.Invalidate, func() {
			cache.Resume()
			log.Info("listening to other replicas' writes; cache on")
		}, func(err error) {
			cache.Suspend()
			log.Warn("not listening to other replicas' writes; cache off until it is back", "err", err)
		})
		if err != nil {
			log.Error("cannot listen to other replicas' writes; the cache stays off", "err", err)
		}
	})
	wg.Go(func() {
		err := r.bus.Listen(ctx, service.BusWake, func(payload string) {
			for _, id := range strings.Fields(payload) {
				if rec.Holds(id) { // the others are another replica's
					rec.WakeCluster(id)
				}
			}
		}, rec.Wake, func(err error) {
			log.Warn("not listening to other replicas' wake-ups; clusters are passed over at their resync until it is back", "err", err)
		})
		if err != nil {
			log.Error("cannot listen to other replicas' wake-ups; clusters are passed over at their resync", "err", err)
		}
	})
	wg.Wait()
}

// announce asks the replica holding each cluster to pass over it, in
// messages that fit the bus.
func (r *replica) announce(ctx context.Context, ids []string, log *slog.Logger) {
	var msg strings.Builder
	send := func() {
		if msg.Len() == 0 {
			return
		}
		if err := r.bus.Publish(context.WithoutCancel(ctx), service.BusWake, msg.String()); err != nil {
			log.Warn("announce clusters to other replicas; they pass over them at their resync", "err", err)
		}
		msg.Reset()
	}
	for _, id := range ids {
		if msg.Len()+len(id)+1 > service.MaxBusPayload {
			send()
		}
		if msg.Len() > 0 {
			msg.WriteByte(' ')
		}
		msg.WriteString(id)
	}
	send()
}
