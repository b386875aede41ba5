package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/microgrpc/microgrpc/internal/certs"
	"github.com/microgrpc/microgrpc/internal/envconfig"
	"github.com/microgrpc/microgrpc/micro/controlplane"
)

// defaultXDSAddress is where micro xds listens, and what micro xds
// bootstrap names, by default.
const defaultXDSAddress = "127.0.0.1:18000"

var xdsCmd = &command{
	name:     "xds",
	synopsis: "micro xds [flags] [bootstrap]",
	summary:  "serve the registry to xDS clients (xds:///SERVICE); bootstrap prints their bootstrap file",
	help: `Serves every service of the registry to xDS ("proxyless gRPC") clients
in any language, which then dial xds:///SERVICE: a listener, route
configuration, cluster and endpoint assignment per service, following the
registry as nodes come and go, until interrupted (Ctrl-C, SIGTERM).

A call that carries the header x-version: V (--version_header) goes to the
nodes of version V; the others go to every node, or are split between
versions by --version_weights. With --health_check the control plane asks
every node for its health and marks failing nodes UNHEALTHY.

With --tls_cert_file and --tls_key_file the port serves TLS; with
--tls_ca_file as well, clients must present a certificate it signed.

micro xds bootstrap prints the bootstrap file of a client of the control
plane at --address (the same TLS files: the CA verifies the control plane,
the certificate and key are the client's for mutual TLS); give it to the
client in GRPC_XDS_BOOTSTRAP (a file) or GRPC_XDS_BOOTSTRAP_CONFIG (its
contents).

Examples:
  micro xds --registry=etcd --registry_address=127.0.0.1:2379 --address 127.0.0.1:18000
  micro xds --version_weights greeter=v1:95,v2:5
  micro xds bootstrap --address 127.0.0.1:18000 > bootstrap.json`,
	minArgs: 0, maxArgs: 1,
	flags: func(c *cmdline) func(context.Context, *cmdline) error {
		address := c.fs.String("address", defaultXDSAddress, "`host:port` the control plane listens on (and bootstrap names)")
		header := c.fs.String("version_header", controlplane.DefaultVersionHeader, "request `header` whose value selects the nodes of one version; empty: no version routes")
		health := c.fs.Duration("health_check", 0, "ask every node for its health this `often` and mark failing nodes UNHEALTHY; 0: off")
		var weights weightsFlag
		c.fs.Var(&weights, "version_weights", "split the calls of a service that name no version between its versions by weight: `SERVICE=V:W,...` (repeatable)")
		nodeID := c.fs.String("node_id", controlplane.DefaultClientNodeID, "bootstrap: the client's node `id`")
		return func(ctx context.Context, c *cmdline) error {
			if len(c.args) == 1 {
				if c.args[0] != "bootstrap" {
					return usageErrorf("unknown argument %q: want bootstrap or nothing", c.args[0])
				}
				return runXDSBootstrap(c, *address, *nodeID)
			}
			opts := []controlplane.Option{controlplane.WithVersionHeader(*header)}
			for _, w := range weights {
				opts = append(opts, controlplane.WithVersionWeights(w.service, w.weights))
			}
			return runXDS(ctx, c, *address, *health, opts)
		}
	},
}

// tlsFiles are the three TLS settings.
func (c *cmdline) tlsFiles() certs.Files {
	return certs.Files{CertFile: c.values[envconfig.TLSCertFile], KeyFile: c.values[envconfig.TLSKeyFile], CAFile: c.values[envconfig.TLSCAFile]}
}

func runXDSBootstrap(c *cmdline, address, nodeID string) error {
	f := c.tlsFiles()
	b, err := controlplane.Bootstrap(controlplane.BootstrapConfig{
		ServerURI: address, NodeID: nodeID, CAFile: f.CAFile, CertFile: f.CertFile, KeyFile: f.KeyFile,
	})
	if err != nil {
		return trimInvalid(err)
	}
	_, err = fmt.Fprintf(c.out, "%s\n", b)
	return err
}

func runXDS(ctx context.Context, c *cmdline, address string, health time.Duration, opts []controlplane.Option) error {
	reg, desc, err := c.registry()
	if err != nil {
		return err
	}
	security := "plaintext: any client can connect (give --tls_cert_file and --tls_key_file for TLS)"
	if files := c.tlsFiles(); !files.Empty() {
		src, err := certs.New(files, nil)
		if err != nil {
			return err
		}
		if !src.HasCert() {
			return usageErrorf("--tls_ca_file alone: the control plane needs --tls_cert_file and --tls_key_file to serve TLS")
		}
		opts = append(opts, controlplane.WithServerOptions(grpc.Creds(credentials.NewTLS(src.ServerConfig("h2")))))
		security = "TLS"
		if src.HasCA() {
			security = "mutual TLS: clients need a certificate the CA signed"
		}
		if health > 0 {
			opts = append(opts, controlplane.WithHealthCheck(health, grpc.WithTransportCredentials(credentials.NewTLS(src.ClientConfig("h2")))))
		}
	} else if health > 0 {
		opts = append(opts, controlplane.WithHealthCheck(health))
	}
	cp, err := controlplane.New(reg, append(opts, controlplane.WithLogger(logger(c.err)))...)
	if err != nil {
		return trimInvalid(err)
	}
	defer cp.Close()
	lis, err := net.Listen("tcp", address)
	if err != nil {
		return fmt.Errorf("listen on %s: %v", address, err)
	}
	fmt.Fprintf(c.err, "xDS control plane of the %s on %s (%s); clients: micro xds bootstrap --address %s\n",
		desc, lis.Addr(), security, lis.Addr())
	served := make(chan error, 1)
	go func() { served <- cp.Serve(lis) }()
	select {
	case <-ctx.Done():
		cp.Close()
		<-served
		return nil // interrupted: the normal end
	case err := <-served:
		return fmt.Errorf("serve: %v", err)
	}
}

// serviceWeights is one --version_weights.
type serviceWeights struct {
	service string
	weights map[string]uint32
}

// weightsFlag collects --version_weights SERVICE=V:W,V:W.
type weightsFlag []serviceWeights

func (w *weightsFlag) String() string { return "" }

func (w *weightsFlag) Set(v string) error {
	svc, list, ok := strings.Cut(v, "=")
	if !ok || svc == "" || list == "" {
		return fmt.Errorf("%q: want SERVICE=VERSION:WEIGHT[,VERSION:WEIGHT]", v)
	}
	sw := serviceWeights{service: svc, weights: map[string]uint32{}}
	for _, p := range strings.Split(list, ",") {
		ver, ws, ok := strings.Cut(p, ":")
		n, err := strconv.ParseUint(ws, 10, 32)
		if !ok || err != nil {
			return fmt.Errorf("%q: %q: want VERSION:WEIGHT, a whole number", v, p)
		}
		sw.weights[ver] = uint32(n)
	}
	*w = append(*w, sw)
	return nil
}

// trimInvalid drops the sentinel's prefix from an option error: the
// command's own error line already says what failed.
func trimInvalid(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), controlplane.ErrInvalidOption.Error()+": "))
}
