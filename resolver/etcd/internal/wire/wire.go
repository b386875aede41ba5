// Package wire is the etcd value format of a registered node: the JSON of
// etcd's own naming/endpoints update ({"Op":0,"Addr":"host:port",
// "Metadata":{...}}), so etcd's gRPC naming resolver can read our keys, with
// the node's registry data inside Metadata.
package wire

import (
	"encoding/json"
	"errors"
	"fmt"

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
}

// Encode returns the value stored for node n of s.
func Encode(s *resolver.Service, n resolver.Node) ([]byte, error) {
	return json.Marshal(Update{Op: OpAdd, Addr: n.Address, Metadata: Node{
		ID: n.ID, Service: s.Name, Version: s.Version, Metadata: n.Metadata,
		ServiceMetadata: s.Metadata, Endpoints: s.Endpoints,
	}})
}

// ErrMalformed is wrapped by Decode's errors.
var ErrMalformed = errors.New("malformed registry value")

// Decode parses a stored value back into a one-node service.
func Decode(value []byte) (*resolver.Service, error) {
	var u Update
	if err := json.Unmarshal(value, &u); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if u.Op != OpAdd || u.Addr == "" || u.Metadata.ID == "" || u.Metadata.Service == "" {
		return nil, fmt.Errorf("%w: missing op, address, node id or service name", ErrMalformed)
	}
	m := u.Metadata
	return &resolver.Service{
		Name: m.Service, Version: m.Version, Metadata: m.ServiceMetadata, Endpoints: m.Endpoints,
		Nodes: []resolver.Node{{ID: m.ID, Address: u.Addr, Metadata: m.Metadata}},
	}, nil
}
