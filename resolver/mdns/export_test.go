package mdns

import "time"

func (r *Registry) currentBrowser() *browser {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.browser
}

// WatcherCount reports how many watchers the registry's browser still
// holds, so that tests can check that stopped watchers are forgotten.
func (r *Registry) WatcherCount() int {
	b := r.currentBrowser()
	if b == nil {
		return 0
	}
	return b.watchers.Len()
}

// Sightings reports how many DNS-SD instances the browser has seen, and not
// yet expired, that claim a node of service.
func (r *Registry) Sightings(service string) int {
	b := r.currentBrowser()
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, key := range b.instances {
		if key.service == service {
			n++
		}
	}
	return n
}

// InstanceName is the DNS-SD instance label of a node's gen-th
// announcement.
var InstanceName = instanceName

// WithMaxTTL shortens MaxTTL, so that tests can see a claim clamped to it
// expire.
func WithMaxTTL(d time.Duration) Option { return func(o *options) { o.maxTTL = d } }

// SightingTTL reports the liveness TTL the browser keeps for the DNS-SD
// instance labelled instance, or 0 when it has none.
func (r *Registry) SightingTTL(instance string) time.Duration {
	b := r.currentBrowser()
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	fqdn := instance + "." + b.fqdnType
	key, ok := b.instances[fqdn]
	if !ok {
		return 0
	}
	return b.nodes[key].instances[fqdn].ttl
}
