package mdns

// WatcherCount reports how many watchers the registry's browser still
// holds, so that tests can check that stopped watchers are forgotten.
func (r *Registry) WatcherCount() int {
	r.mu.Lock()
	b := r.browser
	r.mu.Unlock()
	if b == nil {
		return 0
	}
	return b.watchers.Len()
}

// Sightings reports how many DNS-SD instances the browser has seen, and not
// yet expired, that claim a node of service.
func (r *Registry) Sightings(service string) int {
	r.mu.Lock()
	b := r.browser
	r.mu.Unlock()
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
