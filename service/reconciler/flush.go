package reconciler

import (
	"context"
	"time"
)

// FlushLoop calls flush every interval until ctx ends, then once more with
// a context of its own, so what was batched in memory (heartbeats, token
// last-used times) is not lost at shutdown.
func FlushLoop(ctx context.Context, every time.Duration, flush func(context.Context) error, onErr func(error)) {
	flushLoop(ctx, every, nil, flush, onErr)
}

// flushLoop is FlushLoop that also flushes when kick is signalled.
func flushLoop(ctx context.Context, every time.Duration, kick <-chan struct{}, flush func(context.Context) error, onErr func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := flush(fctx); err != nil {
				onErr(err)
			}
			cancel()
			return
		case <-t.C:
			if err := flush(ctx); err != nil {
				onErr(err)
			}
		case <-kick:
			if err := flush(ctx); err != nil {
				onErr(err)
			}
		}
	}
}

// truncate cuts what an agent reports to what the store keeps.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
