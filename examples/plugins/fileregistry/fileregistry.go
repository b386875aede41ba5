// Package fileregistry is an example third-party registry plugin: nodes are
// JSON files in a shared directory, so processes on one host find each other
// without any network discovery. Importing it for its side effect adds the
// registry plugin "file":
//
//	import _ "github.com/microgrpc/microgrpc/examples/plugins/fileregistry"
//
// and `--registry=file --registry_address=/some/dir` selects it. It is a
// demonstration of the plugin mechanism, not a production registry: watches
// poll the directory. Its test shows how a plugin checks that it keeps the
// registry contract: it runs the conformance kit,
// github.com/microgrpc/microgrpc/resolver/registrytest.
package fileregistry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/microgrpc/microgrpc/plugins"
	"github.com/microgrpc/microgrpc/resolver"
)

// Name is the plugin name.
const Name = "file"

// PollInterval is how often a watch rereads the directory.
const PollInterval = 100 * time.Millisecond

func init() {
	plugins.RegisterRegistry(Name, func(o plugins.RegistryOptions) (resolver.Registry, error) {
		if len(o.Addrs) != 1 {
			return nil, fmt.Errorf("fileregistry: want exactly one directory as the registry address, got %d", len(o.Addrs))
		}
		return New(o.Addrs[0])
	})
}

// New returns a registry keeping its nodes in dir (created if missing).
func New(dir string) (resolver.Registry, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("fileregistry: %w", err)
	}
	return &registry{dir: dir}, nil
}

type registry struct{ dir string }

// record is one node on disk.
type record struct {
	Service  *resolver.Service `json:"service"`
	Deadline time.Time         `json:"deadline"` // zero: no TTL
}

func (r *registry) String() string { return Name }

func (r *registry) path(service, node string) string {
	return filepath.Join(r.dir, service+"~"+node+".json")
}

func (r *registry) Register(_ context.Context, s *resolver.Service, opts ...resolver.RegisterOption) error {
	if err := s.Validate(); err != nil {
		return err
	}
	o := resolver.NewRegisterOptions(opts...)
	for _, n := range s.Nodes {
		one := s.Clone()
		one.Nodes = []resolver.Node{n}
		rec := record{Service: one}
		if o.TTL > 0 {
			rec.Deadline = time.Now().Add(o.TTL)
		}
		data, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if err := r.write(r.path(s.Name, n.ID), data); err != nil {
			return err
		}
	}
	return nil
}

// write replaces the file at path by writing a temporary file and renaming
// it, so readers never see half a file. The temporary file's name is
// unique: registrations of one node from several goroutines or processes
// (heartbeats) must not write into, or rename away, each other's.
func (r *registry) write(path string, data []byte) error {
	f, err := os.CreateTemp(r.dir, filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

func (r *registry) Deregister(_ context.Context, s *resolver.Service) error {
	// Names become file names: one with '/' (or "..") would remove a file
	// outside the directory, so they are refused as Register refuses them.
	if s == nil {
		return fmt.Errorf("%w: nil service", resolver.ErrInvalidService)
	}
	if err := resolver.ValidateName(s.Name); err != nil {
		return err
	}
	for _, n := range s.Nodes {
		if n.ID == "" || strings.Contains(n.ID, "/") {
			return fmt.Errorf("%w: service %q: node id %q", resolver.ErrInvalidService, s.Name, n.ID)
		}
	}
	for _, n := range s.Nodes {
		if err := os.Remove(r.path(s.Name, n.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// read returns the live nodes of every service, by service then node id.
func (r *registry) read() (map[string]map[string]*resolver.Service, error) {
	files, err := filepath.Glob(filepath.Join(r.dir, "*.json"))
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]*resolver.Service{}
	now := time.Now()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // removed meanwhile
		}
		var rec record
		if json.Unmarshal(data, &rec) != nil || rec.Service == nil || len(rec.Service.Nodes) != 1 {
			continue // not ours
		}
		if !rec.Deadline.IsZero() && now.After(rec.Deadline) {
			continue // expired
		}
		s := rec.Service
		if out[s.Name] == nil {
			out[s.Name] = map[string]*resolver.Service{}
		}
		out[s.Name][s.Nodes[0].ID] = s
	}
	return out, nil
}

func (r *registry) GetService(_ context.Context, name string) ([]*resolver.Service, error) {
	all, err := r.read()
	if err != nil {
		return nil, err
	}
	nodes := all[name]
	if len(nodes) == 0 {
		return nil, fmt.Errorf("%w: %q in %s", resolver.ErrNotFound, name, r.dir)
	}
	var svcs []*resolver.Service
	for _, s := range nodes {
		svcs = append(svcs, s)
	}
	return resolver.GroupByVersion(svcs), nil
}

func (r *registry) ListServices(ctx context.Context) ([]*resolver.Service, error) {
	all, err := r.read()
	if err != nil {
		return nil, err
	}
	var out []*resolver.Service
	for _, name := range slices.Sorted(maps.Keys(all)) {
		svcs, err := r.GetService(ctx, name)
		if err == nil {
			out = append(out, svcs...)
		}
	}
	return out, nil
}

func (r *registry) Watch(ctx context.Context, opts ...resolver.WatchOption) (resolver.Watcher, error) {
	o := resolver.NewWatchOptions(opts...)
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{reg: r, service: o.Service, ctx: ctx, cancel: cancel, seen: map[string]*resolver.Service{}}
	// The first poll fills seen without events: a watch reports changes
	// from now on.
	w.poll()
	w.pending = nil
	return w, nil
}

type watcher struct {
	reg     *registry
	service string
	ctx     context.Context
	cancel  context.CancelFunc
	once    sync.Once

	seen    map[string]*resolver.Service // "service/node" -> last seen
	pending []*resolver.Event
}

// poll compares the directory with what was seen and queues the changes.
func (w *watcher) poll() {
	all, err := w.reg.read()
	if err != nil {
		return
	}
	now := map[string]*resolver.Service{}
	for name, nodes := range all {
		if w.service != "" && name != w.service {
			continue
		}
		for id, s := range nodes {
			now[name+"/"+id] = s
		}
	}
	for _, k := range slices.Sorted(maps.Keys(now)) {
		old, ok := w.seen[k]
		switch {
		case !ok:
			w.pending = append(w.pending, &resolver.Event{Action: resolver.Create, Service: now[k], Timestamp: time.Now()})
		case !equal(old, now[k]):
			w.pending = append(w.pending, &resolver.Event{Action: resolver.Update, Service: now[k], Timestamp: time.Now()})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(w.seen)) {
		if _, ok := now[k]; !ok {
			w.pending = append(w.pending, &resolver.Event{Action: resolver.Delete, Service: w.seen[k], Timestamp: time.Now()})
		}
	}
	w.seen = now
}

func equal(a, b *resolver.Service) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func (w *watcher) Next() (*resolver.Event, error) {
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	for len(w.pending) == 0 {
		select {
		case <-w.ctx.Done():
			return nil, resolver.ErrWatcherStopped
		case <-t.C:
			w.poll()
		}
	}
	ev := w.pending[0]
	w.pending = w.pending[1:]
	return ev, nil
}

func (w *watcher) Stop() { w.once.Do(w.cancel) }
