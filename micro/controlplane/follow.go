package controlplane

import (
	"context"
	"log/slog"
	"time"

	"github.com/microgrpc/microgrpc/internal/backoff"
	"github.com/microgrpc/microgrpc/resolver"
)

// listTimeout bounds one listing of the registry's services.
const listTimeout = 15 * time.Second

// retry spaces out attempts after a registry failure.
var retry = backoff.Policy{Min: 100 * time.Millisecond, Max: 10 * time.Second}

// run learns the registry's services: it watches every service, lists
// them, and follows each name it meets; after a failure it does both
// again, backing off. The nodes of each service are followed by a
// resolver.Follower of its own, the loop every registry client of
// microgrpc shares; this one only finds names.
func (cp *ControlPlane) run() {
	ctx := cp.ctx
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := cp.watchOnce(ctx, func() { attempt = 0 })
		if ctx.Err() != nil {
			return
		}
		level := slog.LevelDebug
		if attempt == 0 {
			level = slog.LevelWarn
		}
		delay := retry.Delay(attempt)
		cp.opts.logger.Log(ctx, level, "microgrpc: control plane: registry error, retrying",
			"registry", cp.reg.String(), "error", err, "retry_in", delay)
		if !backoff.Sleep(ctx, delay, nil) {
			return
		}
	}
}

// watchOnce watches, lists, then follows the names of the watch's events
// until it fails. Watching first means a service that appears during the
// listing is still seen.
func (cp *ControlPlane) watchOnce(ctx context.Context, healthy func()) error {
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	w, err := cp.reg.Watch(wctx)
	if err != nil {
		return err
	}
	defer w.Stop()
	lctx, lcancel := context.WithTimeout(ctx, listTimeout)
	list, err := cp.reg.ListServices(lctx)
	lcancel()
	if err != nil {
		return err
	}
	for _, s := range list {
		cp.follow(s.Name)
	}
	select {
	case <-cp.listed:
	default:
		close(cp.listed)
	}
	healthy()
	for {
		ev, err := w.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if ev != nil && ev.Service != nil && ev.Action != resolver.Delete {
			cp.follow(ev.Service.Name)
		}
	}
}

// follow starts following the named service unless it is followed
// already. A service whose nodes are all gone stays followed, with an
// empty assignment, so that its clients hear that it has no nodes.
func (cp *ControlPlane) follow(name string) {
	if resolver.ValidateName(name) != nil {
		return
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.closed || cp.services[name] != nil {
		return
	}
	s := &followed{name: name, f: resolver.Follow(cp.reg, name, resolver.WithLogger(cp.opts.logger))}
	var healthChanged <-chan struct{}
	if cp.opts.health {
		s.health = newHealthChecks(cp, name)
		healthChanged = s.health.changed
	}
	cp.services[name] = s
	cp.wg.Add(1)
	go func() {
		defer cp.wg.Done()
		for {
			select {
			case <-cp.ctx.Done():
				if s.health != nil {
					s.health.stop()
				}
				return
			case <-s.f.Changed():
			case <-healthChanged:
			}
			cp.publish(s)
		}
	}()
}
