package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/codec"
)

var publishCmd = &command{
	name:     "publish",
	synopsis: "micro publish [flags] TOPIC [JSON]",
	summary:  "publish a JSON message to a topic on the broker",
	help: `Publishes a JSON message (content-type application/json) to TOPIC on the
configured broker (--broker: http by default, nats, jetstream). A typed
micro subscriber decodes it into its message type. It returns once the
broker took the message as its delivery promise says: with http, once
every subscriber (one per queue group) handled it; with nats, once the
server has it; with jetstream, once the stream stored it.

The message is the JSON argument, or -d JSON, -d @FILE, -d - (standard
input). -H key=value adds a header.

Examples:
  micro publish events '{"id":"1","message":"hi"}'
  micro publish events -d @event.json --broker=nats --broker_address=nats://127.0.0.1:4222`,
	minArgs: 1, maxArgs: 2,
	flags: func(c *cmdline) func(context.Context, *cmdline) error {
		data := c.fs.String("d", "", "the message instead of the JSON argument: JSON, @FILE, or - for standard input")
		var headers headerFlag
		c.fs.Var(&headers, "H", "a message header `key=value` (repeatable)")
		timeout := c.timeoutFlag(30*time.Second, "bounds connecting and publishing")
		return func(ctx context.Context, c *cmdline) error { return runPublish(ctx, c, *data, headers, *timeout) }
	},
}

func runPublish(ctx context.Context, c *cmdline, dataFlag string, headers headerFlag, timeout time.Duration) error {
	topic := c.args[0]
	if err := broker.ValidateTopic(topic); err != nil {
		return usageErrorf("%v", err)
	}
	arg, argGiven := "", len(c.args) == 2
	if argGiven {
		arg = c.args[1]
	}
	data, ok, err := c.readData(arg, dataFlag, argGiven)
	if err != nil {
		return err
	}
	if !ok {
		return usageErrorf("no message: give it as an argument or with -d")
	}
	data = bytes.TrimSpace(data)
	if err := checkJSON("the message", data); err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	b, err := c.connectBroker(ctx)
	if err != nil {
		return err
	}
	header := map[string]string{}
	for _, kv := range headers {
		header[kv[0]] = kv[1]
	}
	header["content-type"] = codec.ContentTypeJSON
	if err := b.Publish(ctx, topic, &broker.Message{Header: header, Body: data}); err != nil {
		return fmt.Errorf("publish to %s on the %s broker: %v", topic, b, err)
	}
	if c.json() {
		return c.printJSON(map[string]any{"topic": topic, "broker": b.String(), "bytes": len(data)})
	}
	_, err = fmt.Fprintf(c.out, "published %d bytes to %s on the %s broker\n", len(data), topic, b)
	return err
}

// connectBroker returns the service's broker, connected.
func (c *cmdline) connectBroker(ctx context.Context) (broker.Broker, error) {
	b, err := c.svc.Broker()
	if err != nil {
		return nil, err
	}
	if err := b.Connect(ctx); err != nil {
		return nil, fmt.Errorf("connect to the %s broker: %v", b, err)
	}
	return b, nil
}

var subscribeCmd = &command{
	name:     "subscribe",
	synopsis: "micro subscribe [flags] TOPIC",
	summary:  "print the messages published to a topic until interrupted",
	help: `Subscribes to TOPIC on the configured broker and prints every message with
its headers until interrupted (Ctrl-C, SIGTERM), which ends it with exit
status 0. A JSON body is printed as it is; another body as text when it
is UTF-8, in base64 otherwise. With --queue the subscription joins a queue
group: each message goes to one member of the group. The subscription is
not durable: with jetstream it gets what is published while it runs.

Examples:
  micro subscribe events
  micro subscribe events --queue workers -o json`,
	minArgs: 1, maxArgs: 1,
	flags: func(c *cmdline) func(context.Context, *cmdline) error {
		queue := c.fs.String("queue", "", "join the queue `group`: each message goes to one of its members")
		return func(ctx context.Context, c *cmdline) error { return runSubscribe(ctx, c, *queue) }
	},
}

// received is one message as micro subscribe -o json prints it: the body
// as JSON when it is JSON, otherwise as text or base64.
type received struct {
	Topic      string            `json:"topic"`
	Header     map[string]string `json:"header"`
	Body       json.RawMessage   `json:"body,omitempty"`
	BodyText   *string           `json:"body_text,omitempty"`
	BodyBase64 []byte            `json:"body_base64,omitempty"`
}

func runSubscribe(ctx context.Context, c *cmdline, queue string) error {
	topic := c.args[0]
	if err := broker.ValidateTopic(topic); err != nil {
		return usageErrorf("%v", err)
	}
	connectCtx, cancel := withTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := c.connectBroker(connectCtx)
	if err != nil {
		return err
	}
	var mu sync.Mutex // one message printed at a time
	handler := func(_ context.Context, e broker.Event) error {
		m := e.Message()
		mu.Lock()
		defer mu.Unlock()
		return c.printMessage(e.Topic(), m)
	}
	opts := []broker.SubscribeOption{broker.Ephemeral(), broker.SubscriberName("micro-cli"), broker.MaxConcurrent(1)}
	if queue != "" {
		opts = append(opts, broker.Queue(queue))
	}
	sub, err := b.Subscribe(topic, handler, opts...)
	if err != nil {
		return fmt.Errorf("subscribe to %s on the %s broker: %v", topic, b, err)
	}
	in := ""
	if queue != "" {
		in = " in queue group " + queue
	}
	fmt.Fprintf(c.err, "subscribed to %s%s on the %s broker (Ctrl-C to stop)\n", topic, in, b)
	<-ctx.Done()
	stopCtx, cancelStop := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelStop()
	_ = sub.Unsubscribe(stopCtx)
	return nil
}

func (c *cmdline) printMessage(topic string, m *broker.Message) error {
	isJSON := false
	if ct, err := codec.ForContentType(m.Header["content-type"]); err == nil && ct.Name() == "json" && json.Valid(m.Body) {
		isJSON = true
	}
	if c.json() {
		r := received{Topic: topic, Header: m.Header}
		if r.Header == nil {
			r.Header = map[string]string{}
		}
		switch {
		case isJSON:
			var buf bytes.Buffer
			if json.Compact(&buf, m.Body) == nil {
				r.Body = buf.Bytes()
			}
		case utf8.Valid(m.Body):
			s := string(m.Body)
			r.BodyText = &s
		default:
			r.BodyBase64 = m.Body
		}
		return c.printJSON(r)
	}
	var hs []string
	for _, k := range slices.Sorted(maps.Keys(m.Header)) {
		hs = append(hs, k+"="+m.Header[k])
	}
	body := string(m.Body)
	if !isJSON && !utf8.Valid(m.Body) {
		body = "base64:" + base64.StdEncoding.EncodeToString(m.Body)
	}
	_, err := fmt.Fprintf(c.out, "%s  %s\n%s\n\n", topic, strings.Join(hs, " "), strings.TrimRight(body, "\n"))
	return err
}
