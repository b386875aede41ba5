// Package natsconn dials NATS the same way for the nats and jetstream
// brokers: options, reconnects forever, and logs disconnects, reconnects
// and asynchronous errors.
package natsconn

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
)

// Options are the connection settings both brokers share.
type Options struct {
	URLs           []string
	TLS            *tls.Config
	User, Password string
	Token          string
	CredsFile      string
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

// Defaults returns nats://127.0.0.1:4222, a 5 s connect timeout and the
// default logger.
func Defaults() Options {
	return Options{URLs: []string{natsgo.DefaultURL}, ConnectTimeout: 5 * time.Second, Logger: slog.Default()}
}

// Connect dials; kind names the broker in log lines and errors.
func Connect(kind string, o Options) (*natsgo.Conn, error) {
	log := o.Logger
	nopts := []natsgo.Option{
		natsgo.Name("microgrpc"),
		natsgo.Timeout(o.ConnectTimeout),
		natsgo.MaxReconnects(-1),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if err != nil {
				log.Warn(kind+" broker: disconnected", "error", err)
			}
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) { log.Info(kind+" broker: reconnected", "url", nc.ConnectedUrlRedacted()) }),
		natsgo.ErrorHandler(func(_ *natsgo.Conn, s *natsgo.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			log.Error(kind+" broker: async error", "subject", subj, "error", err)
		}),
	}
	if o.TLS != nil {
		nopts = append(nopts, natsgo.Secure(o.TLS))
	}
	if o.User != "" {
		nopts = append(nopts, natsgo.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		nopts = append(nopts, natsgo.Token(o.Token))
	}
	if o.CredsFile != "" {
		nopts = append(nopts, natsgo.UserCredentials(o.CredsFile))
	}
	nc, err := natsgo.Connect(strings.Join(o.URLs, ","), nopts...)
	if err != nil {
		return nil, fmt.Errorf("%s broker: connect to %v: %w", kind, o.URLs, err)
	}
	return nc, nil
}
