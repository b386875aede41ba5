package controlplane

import (
	"encoding/json"
	"fmt"
)

// DefaultClientNodeID is the node id of the bootstrap that [Bootstrap]
// writes when BootstrapConfig.NodeID is empty.
const DefaultClientNodeID = "microgrpc-xds-client"

// BootstrapConfig describes the bootstrap file of an xDS client: where
// the control plane is and how to reach it.
type BootstrapConfig struct {
	// ServerURI is the control plane's address, host:port.
	ServerURI string
	// NodeID names the client to the control plane (in its logs); this
	// control plane serves every client the same resources.
	NodeID string
	// Zone, when set, is the client's locality zone.
	Zone string
	// CAFile turns TLS on: the control plane's certificate is verified
	// against it. CertFile and KeyFile, given together, are the client's
	// certificate for mutual TLS. Paths are written as given, and read
	// by the client.
	CAFile, CertFile, KeyFile string
}

// Bootstrap returns the JSON bootstrap file of an xDS client of the
// control plane at c.ServerURI (gRFC A27): the file that
// GRPC_XDS_BOOTSTRAP names, or GRPC_XDS_BOOTSTRAP_CONFIG holds, for a
// client that dials xds:///SERVICE. It asks for resource deletions to be
// ignored, so that a client keeps calling with what it has while a
// restarted control plane relists the registry.
func Bootstrap(c BootstrapConfig) ([]byte, error) {
	if c.ServerURI == "" {
		return nil, fmt.Errorf("%w: bootstrap: empty server URI", ErrInvalidOption)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, fmt.Errorf("%w: bootstrap: a certificate file needs its key file and a key file its certificate", ErrInvalidOption)
	}
	if c.CertFile != "" && c.CAFile == "" {
		return nil, fmt.Errorf("%w: bootstrap: a client certificate needs the CA file that verifies the control plane", ErrInvalidOption)
	}
	creds := map[string]any{"type": "insecure"}
	if c.CAFile != "" {
		cfg := map[string]any{"ca_certificate_file": c.CAFile}
		if c.CertFile != "" {
			cfg["certificate_file"], cfg["private_key_file"] = c.CertFile, c.KeyFile
		}
		creds = map[string]any{"type": "tls", "config": cfg}
	}
	id := c.NodeID
	if id == "" {
		id = DefaultClientNodeID
	}
	// Some clients (Node's grpc-js-xds) require a locality, if empty.
	locality := map[string]any{}
	if c.Zone != "" {
		locality["zone"] = c.Zone
	}
	node := map[string]any{"id": id, "locality": locality}
	doc := map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      c.ServerURI,
			"channel_creds":   []any{creds},
			"server_features": []string{"xds_v3", "ignore_resource_deletion"},
		}},
		"node": node,
	}
	return json.MarshalIndent(doc, "", "  ")
}
