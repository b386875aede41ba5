package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/microgrpc/microgrpc/internal/certs"
	"github.com/microgrpc/microgrpc/internal/envconfig"
	"github.com/microgrpc/microgrpc/micro/gateway"
)

var gatewayCmd = &command{
	name:     "gateway",
	synopsis: "micro gateway [flags]",
	summary:  "serve every service in the registry over HTTP, with a dashboard at /",
	help: `Serves every service in the registry over HTTP until interrupted:

  POST /api/SERVICE/METHOD            JSON by name (METHOD: Greeter.Hello or greeter.Greeter/Hello)
  /SERVICE/PKG.SERVICE/METHOD         Connect, gRPC-Web and gRPC (base URL /SERVICE)
  /SERVICE/ROUTE                      REST routes of google.api.http annotations
  /                                   the dashboard: services, nodes and their health, methods, a call form

Types are learned by server reflection, and calls go through the
registry's resolver and the random_hash balancer with its retries, as a
service's calls do. With --tls_cert_file and --tls_key_file the gateway
serves HTTPS with that certificate (with --tls_ca_file it requires client
certificates signed by the CA) and calls services over TLS with the same
files. Each request is logged on standard error.

Examples:
  micro gateway --address 127.0.0.1:8080
  curl -d '{"name":"John"}' http://127.0.0.1:8080/api/greeter/Greeter.Hello
  curl http://127.0.0.1:8080/greeter/v1/hello/John`,
	minArgs: 0, maxArgs: 0,
	flags: func(c *cmdline) func(context.Context, *cmdline) error {
		addr := c.fs.String("address", "127.0.0.1:8080", "`host:port` to serve HTTP on")
		timeout := c.timeoutFlag(gateway.DefaultTimeout, "deadline of calls whose request names none (grpc-timeout, Connect-Timeout-Ms); 0: none")
		limit := c.fs.Int64("body_limit", gateway.DefaultBodyLimit, "largest request body, in `bytes`")
		cors := c.fs.String("cors", "", "`origins` (comma-separated, or *) whose pages may call the gateway; none by default")
		headers := c.fs.String("headers", strings.Join(gateway.DefaultHeaders(), ","), "request `headers` passed to services as metadata (comma-separated)")
		dashboard := c.fs.Bool("dashboard", true, "serve the dashboard at /")
		return func(ctx context.Context, c *cmdline) error {
			opts := []gateway.Option{gateway.WithTimeout(*timeout), gateway.WithBodyLimit(*limit),
				gateway.WithHeaders(envconfig.SplitList(*headers)...), gateway.WithDashboard(*dashboard)}
			if *cors != "" {
				opts = append(opts, gateway.WithCORS(envconfig.SplitList(*cors)...))
			}
			return runGateway(ctx, c, *addr, opts)
		}
	},
}

func runGateway(ctx context.Context, c *cmdline, addr string, opts []gateway.Option) error {
	// Access lines are this command's output: info and above.
	level := slog.LevelInfo
	if v, ok := envconfig.CommandLogLevel.Lookup(os.LookupEnv); ok {
		_ = level.UnmarshalText([]byte(v))
	}
	log := slog.New(slog.NewTextHandler(c.err, &slog.HandlerOptions{Level: level}))
	files := certs.Files{CertFile: c.values[envconfig.TLSCertFile], KeyFile: c.values[envconfig.TLSKeyFile], CAFile: c.values[envconfig.TLSCAFile]}
	var tlsConfig *tls.Config
	if !files.Empty() {
		src, err := certs.New(files, log)
		if err != nil {
			return err
		}
		opts = append(opts, gateway.WithNodeDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(src.ClientConfig("h2")))))
		if src.HasCert() {
			tlsConfig = src.ServerConfig("h2", "http/1.1")
		}
	}
	gw, err := gateway.New(c.svc, append(opts, gateway.WithLogger(log))...)
	if err != nil {
		return err
	}
	defer gw.Close()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	scheme := "https"
	if tlsConfig == nil {
		scheme = "http"
		// gRPC clients speak HTTP/2 without TLS (h2c); browsers HTTP/1.1.
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
		log.Warn("micro gateway: no TLS: HTTP is plaintext and unauthenticated; give --tls_cert_file and --tls_key_file for HTTPS")
	} else {
		srv.TLSConfig = tlsConfig
	}
	fmt.Fprintf(c.out, "micro gateway: serving %s://%s (dashboard at /, JSON at /api/SERVICE/METHOD); Ctrl-C to stop\n", scheme, lis.Addr())
	errc := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			errc <- srv.ServeTLS(lis, "", "") // the certificate comes from tlsConfig, read again as it rotates
			return
		}
		errc <- srv.Serve(lis)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx) // the dashboard's event streams end at the deadline
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return err
}
