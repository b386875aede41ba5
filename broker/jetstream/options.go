package jetstream

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/microgrpc/microgrpc/broker/internal/natsconn"
)

// Defaults.
const (
	// DefaultStreamPrefix starts the name of the stream made for a topic.
	DefaultStreamPrefix = "MICRO"
	// DefaultAckWait is how long the server waits for a delivery's answer
	// before delivering the message again (to another member, if any):
	// how long the messages of a subscriber that died wait. A handler that
	// runs longer is reported in progress every third of it, so it is not
	// delivered again meanwhile.
	DefaultAckWait = 5 * time.Second
	// DefaultMaxDeliver is how many times a message is tried before it is
	// terminated (and dead-lettered, when a dead-letter subject is set).
	DefaultMaxDeliver = 5
	// DefaultBackoffMin and DefaultBackoffMax bound the delay before a
	// refused message is delivered again; it doubles with each attempt.
	DefaultBackoffMin = 1 * time.Second
	DefaultBackoffMax = 1 * time.Minute
	// DefaultMaxPending bounds the publishes waiting for the server's
	// acknowledgement at once.
	DefaultMaxPending = 4096
)

type options struct {
	conn         natsconn.Options
	streamPrefix string
	stream       jetstream.StreamConfig   // limits for the streams made per topic
	streams      []jetstream.StreamConfig // explicit streams, by their subjects
	ackWait      time.Duration
	maxDeliver   int
	backoffMin   time.Duration
	backoffMax   time.Duration
	deadLetter   string
	maxPending   int
	replicas     int // 0: as the stream configs say
}

func defaultOptions() options {
	return options{
		conn:         natsconn.Defaults(),
		streamPrefix: DefaultStreamPrefix,
		stream:       jetstream.StreamConfig{Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy},
		ackWait:      DefaultAckWait,
		maxDeliver:   DefaultMaxDeliver,
		backoffMin:   DefaultBackoffMin,
		backoffMax:   DefaultBackoffMax,
		maxPending:   DefaultMaxPending,
	}
}

// Option configures NewBroker.
type Option func(*options)

// WithURLs sets the server URLs (default nats://127.0.0.1:4222). Give
// several servers of one cluster: the broker connects to any of them, and
// moves to another when the one it uses goes away, learning the rest of
// the cluster from the server.
func WithURLs(urls ...string) Option { return func(o *options) { o.conn.URLs = urls } }

// WithTLS sets the TLS configuration of the NATS connection.
func WithTLS(c *tls.Config) Option { return func(o *options) { o.conn.TLS = c } }

// WithUserPassword authenticates with a user and password.
func WithUserPassword(user, password string) Option {
	return func(o *options) { o.conn.User, o.conn.Password = user, password }
}

// WithToken authenticates with a token.
func WithToken(token string) Option { return func(o *options) { o.conn.Token = token } }

// WithCredentialsFile authenticates with a NATS .creds file.
func WithCredentialsFile(path string) Option { return func(o *options) { o.conn.CredsFile = path } }

// WithConnectTimeout bounds connecting.
func WithConnectTimeout(d time.Duration) Option {
	return func(o *options) { o.conn.ConnectTimeout = d }
}

// WithLogger sets the logger for reconnects, refused and terminated
// messages.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.conn.Logger = l
		}
	}
}

// WithStreamDefaults sets the limits of the stream made for each topic
// that no WithStream covers: retention, max age, max messages or bytes,
// storage, replicas (for a cluster). Name and Subjects are ignored: the
// stream is named after the prefix and the topic, and holds that topic.
func WithStreamDefaults(cfg jetstream.StreamConfig) Option {
	return func(o *options) { o.stream = cfg }
}

// WithStreamPrefix sets the start of the names of the streams made per
// topic (default DefaultStreamPrefix).
func WithStreamPrefix(prefix string) Option { return func(o *options) { o.streamPrefix = prefix } }

// WithStream declares a stream (name, subjects with wildcards, limits):
// topics its subjects match are stored in it, created or updated on
// first use, instead of in a stream of their own.
func WithStream(cfg jetstream.StreamConfig) Option {
	return func(o *options) { o.streams = append(o.streams, cfg) }
}

// WithAckWait sets how long a delivery may go unanswered before the
// message is delivered again (default DefaultAckWait): a subscriber that
// died while handling it is noticed after this long. Handlers that run
// longer are not cut short: while one runs, the broker tells the server
// every third of the ack wait that it is in progress. Flag and
// environment: --broker_ack_wait, MICRO_BROKER_ACK_WAIT.
func WithAckWait(d time.Duration) Option { return func(o *options) { o.ackWait = d } }

// WithReplicas sets how many servers of a NATS cluster keep a copy of
// each stream the broker makes (the per-topic ones, and those declared
// with WithStream that set no Replicas). The default, 1, is the only
// value a single server takes; on a cluster pick 3 (or 5 to survive two
// servers lost at once): a stream of 3 replicas stores a message once two
// of them have it, and keeps working with one of them down. Flag and
// environment: --broker_replicas, MICRO_BROKER_REPLICAS.
func WithReplicas(n int) Option { return func(o *options) { o.replicas = n } }

// WithMaxDeliver sets how many times a message is tried before it is
// terminated (default DefaultMaxDeliver).
func WithMaxDeliver(n int) Option { return func(o *options) { o.maxDeliver = n } }

// WithBackoff sets the delay before a refused message is delivered again:
// min after the first refusal, doubling up to max.
func WithBackoff(minDelay, maxDelay time.Duration) Option {
	return func(o *options) { o.backoffMin, o.backoffMax = minDelay, maxDelay }
}

// WithDeadLetter publishes each terminated message to subject (stored in
// a stream like any topic), with headers naming the topic it came from,
// the last error and the number of deliveries. Without it a terminated
// message is only logged.
func WithDeadLetter(subject string) Option { return func(o *options) { o.deadLetter = subject } }

// WithMaxPending bounds the publishes waiting for the server's
// acknowledgement (default DefaultMaxPending); beyond it Publish waits.
func WithMaxPending(n int) Option { return func(o *options) { o.maxPending = n } }
