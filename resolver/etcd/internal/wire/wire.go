// Package wire is the etcd value format of a registered node: the JSON of
// etcd's own naming/endpoints update ({"Op":0,"Addr":"host:port",
// "Metadata":{...}}), so etcd's gRPC naming resolver can read our keys, with
// the node's registry data inside Metadata.
//
// It also reads what etcd's endpoints.Manager writes for a plain grpc-go
// server ({"Op":0,"Addr":"host:port","Metadata":null}, or any metadata):
// the service and node id then come from the key, and the metadata is the
// node's when it is a JSON object of strings.
package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/microgrpc/microgrpc/resolver"
)

// OpAdd is etcd's endpoints.Add.
const OpAdd = 0

// Update mirrors go.etcd.io/etcd/client/v3/naming/endpoints/internal.Update.
type Update struct {
	Op       uint8
	Addr     string
	Metadata Node
}

// Node is what microgrpc keeps in Metadata.
type Node struct {
	ID              string              `json:"id"`
	Service         string              `json:"service"`
	Version         string              `json:"version,omitempty"`
	Metadata        map[string]string   `json:"metadata,omitempty"`
	ServiceMetadata map[string]string   `json:"serviceMetadata,omitempty"`
	Endpoints       []resolver.Endpoint `json:"endpoints,omitempty"`
	HealthService   string              `json:"healthService,omitempty"`
}

// Encode returns the value stored for node n of s. Every string must be
// UTF-8, which is all JSON carries: encoding/json would replace other
// bytes, and a node whose id or service name changed so would no longer
// match its key, nor be found.
func Encode(s *resolver.Service, n resolver.Node) ([]byte, error) {
	if err := checkUTF8(s, n); err != nil {
		return nil, err
	}
	return json.Marshal(Update{Op: OpAdd, Addr: n.Address, Metadata: Node{
		ID: n.ID, Service: s.Name, Version: s.Version, Metadata: n.Metadata,
		ServiceMetadata: s.Metadata, Endpoints: s.Endpoints, HealthService: n.HealthService,
	}})
}

// checkUTF8 returns a resolver.ErrInvalidService error naming each string
// of node n of s that is not UTF-8, or nil.
func checkUTF8(s *resolver.Service, n resolver.Node) error {
	check := func(what, v string) error {
		if utf8.ValidString(v) {
			return nil
		}
		return fmt.Errorf("%w: %s %q of node %q of %q is not UTF-8, which etcd records (JSON) cannot carry", resolver.ErrInvalidService, what, v, n.ID, s.Name)
	}
	errs := []error{check("service name", s.Name), check("version", s.Version), check("node id", n.ID),
		check("address", n.Address), check("health service", n.HealthService)}
	for _, md := range []map[string]string{s.Metadata, n.Metadata} {
		for k, v := range md {
			errs = append(errs, check("metadata key", k), check("metadata value", v))
		}
	}
	for _, e := range s.Endpoints {
		errs = append(errs, check("endpoint", e.Name))
		for k, v := range e.Metadata {
			errs = append(errs, check("endpoint metadata key", k), check("endpoint metadata value", v))
		}
	}
	return errors.Join(errs...)
}

// ErrMalformed is wrapped by Decode's errors.
var ErrMalformed = errors.New("malformed registry value")

// Decode parses a stored value back into a one-node service. service and
// id are what the value's key says (<prefix>/<service>/<id>): a microgrpc
// record must name the same, and a record of etcd's endpoints.Manager takes
// them from there.
func Decode(value []byte, service, id string) (*resolver.Service, error) {
	var u struct {
		Op       *uint8
		Addr     string
		Metadata json.RawMessage
	}
	if err := json.Unmarshal(value, &u); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if u.Op == nil || *u.Op != OpAdd || u.Addr == "" {
		return nil, fmt.Errorf("%w: not an endpoint addition with an address", ErrMalformed)
	}
	var m Node
	if json.Unmarshal(u.Metadata, &m) != nil || m.ID == "" || m.Service == "" {
		// Not ours: an endpoints.Manager record.
		var md map[string]string
		if json.Unmarshal(u.Metadata, &md) != nil {
			md = nil
		}
		return &resolver.Service{Name: service, Nodes: []resolver.Node{{ID: id, Address: u.Addr, Metadata: md}}}, nil
	}
	if m.Service != service || m.ID != id {
		return nil, fmt.Errorf("%w: record of node %q of %q stored under the key of node %q of %q", ErrMalformed, m.ID, m.Service, id, service)
	}
	return &resolver.Service{
		Name: m.Service, Version: m.Version, Metadata: m.ServiceMetadata, Endpoints: m.Endpoints,
		Nodes: []resolver.Node{{ID: m.ID, Address: u.Addr, Metadata: m.Metadata, HealthService: m.HealthService}},
	}, nil
}
