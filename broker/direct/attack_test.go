package direct_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/brokertest"
	"github.com/microgrpc/microgrpc/broker/direct"
	"github.com/microgrpc/microgrpc/proto/delivery"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// rawCodec sends bytes as they are, under the name of the proto codec, so
// that the server decodes them as a Deliveries message.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// sendRaw opens a Deliver stream to addr, sends msg as it is and returns
// the status the stream ended with.
func sendRaw(t *testing.T, addr string, msg []byte) error {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	desc := &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}
	stream, err := cc.NewStream(testCtx(t), desc, delivery.Deliverer_Deliver_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		return err
	}
	if err := stream.SendMsg(msg); err != nil && !errors.Is(err, errEOF) {
		return err
	}
	for {
		var out []byte
		if err := stream.RecvMsg(&out); err != nil {
			return err
		}
	}
}

var errEOF = errors.New("EOF")

// Bad input on the delivery service gets the right status code, never
// reaches a handler, and the node keeps serving.
func TestBadInputOnDeliveryService(t *testing.T) {
	reg := memory.NewRegistry()
	sub := brokertest.New(t, func(*testing.T) broker.Broker {
		return direct.NewBroker(direct.WithRegistry(reg), direct.WithAddress("127.0.0.1:0"), direct.WithLogger(quiet),
			direct.WithMaxMessageSize(1024))
	})
	var handled atomic.Int64
	if _, err := sub.Subscribe("g", func(context.Context, broker.Event) error { handled.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	node := subscribed(t, reg, "g")
	for _, tc := range []struct {
		name string
		msg  []byte
		want codes.Code
	}{
		{"not protobuf", []byte("not protobuf at all"), codes.Internal},
		{"truncated varint", []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, codes.Internal},
		{"length beyond the message", []byte{0x0a, 0x7f, 0x08}, codes.Internal},
		{"larger than the server takes", make([]byte, 5<<20), codes.ResourceExhausted},
	} {
		if err := sendRaw(t, node.Address, tc.msg); status.Code(err) != tc.want {
			t.Errorf("%s: stream ended with %v, want %v", tc.name, err, tc.want)
		}
	}
	// Well-formed deliveries that are wrong get results that say so.
	for _, tc := range []struct {
		name string
		d    *delivery.Delivery
		want codes.Code
	}{
		{"unknown subscription", &delivery.Delivery{Id: 1, Subscription: "nope", Topic: "g"}, codes.NotFound},
		{"wrong topic", &delivery.Delivery{Id: 2, Subscription: node.ID, Topic: "h"}, codes.InvalidArgument},
		{"message too large", &delivery.Delivery{Id: 3, Subscription: node.ID, Topic: "g", Body: make([]byte, 2048)}, codes.InvalidArgument},
	} {
		res, err := attack(t, node.Address, insecure.NewCredentials(), "", tc.d)
		if err != nil || codes.Code(res.GetCode()) != tc.want || res.GetId() != tc.d.Id {
			t.Errorf("%s: result %v, %v; want %v for id %d", tc.name, res, err, tc.want, tc.d.Id)
		}
	}
	if handled.Load() != 0 {
		t.Fatalf("bad input reached the handler %d times", handled.Load())
	}
	pub := brokertest.New(t, factory(reg))
	if err := pub.Publish(testCtx(t), "g", &broker.Message{Body: []byte("ok")}); err != nil || handled.Load() != 1 {
		t.Fatalf("after bad input: Publish = %v, handled %d", err, handled.Load())
	}
}

// halfMessages opens n Deliver streams on one HTTP/2 connection, each
// sending the start of a message that declares size bytes and then
// nothing, and returns the connection and a channel that yields each
// stream's end (its grpc-status, or "RST" for a reset).
func halfMessages(t *testing.T, addr string, n, size int) (net.Conn, <-chan string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for i := range n {
		hb.Reset()
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", delivery.Deliverer_Deliver_FullMethodName},
			{":authority", addr}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		id := uint32(2*i + 1)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		prefix := make([]byte, 5, 5+90)
		binary.BigEndian.PutUint32(prefix[1:], uint32(size))
		if err := fr.WriteData(id, false, append(prefix, make([]byte, 90)...)); err != nil {
			t.Fatal(err)
		}
	}
	ends := make(chan string, n)
	go func() {
		dec := hpack.NewDecoder(4096, nil)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck()
				}
			case *http2.PingFrame:
				if !f.IsAck() {
					fr.WritePing(true, f.Data)
				}
			case *http2.RSTStreamFrame:
				ends <- "RST"
			case *http2.HeadersFrame:
				if !f.StreamEnded() {
					continue
				}
				code := "?"
				fields, _ := dec.DecodeFull(f.HeaderBlockFragment())
				for _, hf := range fields {
					if hf.Name == "grpc-status" {
						code = hf.Value
					}
				}
				ends <- code
			}
		}
	}()
	return c, ends
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// Streams that send half a message and stop hold only what they sent, and
// only until the node ends them (the idle timeout, then the request
// timeout to go away); the node keeps serving meanwhile. (The old broker
// allocated each frame's declared length before its payload came and then
// waited for ever: 64 half-sent frames held 68 MiB.)
func TestHalfSentMessagesBounded(t *testing.T) {
	reg := memory.NewRegistry()
	sub := brokertest.New(t, func(*testing.T) broker.Broker {
		return direct.NewBroker(direct.WithRegistry(reg), direct.WithAddress("127.0.0.1:0"), direct.WithLogger(quiet),
			direct.WithIdleTimeout(300*time.Millisecond), direct.WithRequestTimeout(300*time.Millisecond))
	})
	var handled atomic.Int64
	if _, err := sub.Subscribe("half", func(context.Context, broker.Event) error { handled.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	node := subscribed(t, reg, "half")
	before := heapInUse()
	const n = 64
	_, ends := halfMessages(t, node.Address, n, 4<<20-16)
	time.Sleep(100 * time.Millisecond)
	held := int64(heapInUse()) - int64(before)
	t.Logf("%d streams with half a 4 MiB message each: %+d KiB of heap", n, held/1024)
	if held > 8<<20 {
		t.Errorf("%d half messages hold %d MiB", n, held>>20)
	}
	// Meanwhile the node serves a real publisher.
	pub := brokertest.New(t, factory(reg))
	if err := pub.Publish(testCtx(t), "half", &broker.Message{Body: []byte("ok")}); err != nil || handled.Load() != 1 {
		t.Fatalf("while half messages wait: Publish = %v, handled %d", err, handled.Load())
	}
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for i := range n {
		select {
		case code := <-ends:
			if code != fmt.Sprint(int(codes.Unavailable)) && code != "RST" {
				t.Fatalf("stream %d ended with grpc-status %s, want UNAVAILABLE", i, code)
			}
		case <-deadline.C:
			t.Fatalf("only %d of %d half-sent streams were ended within 5 s", i, n)
		}
	}
}

// Nothing runs after Disconnect returns: when the drain's deadline passes,
// queued deliveries are refused (their publishers hear it: nothing they
// were told was handled is lost) instead of running later with a
// cancelled context.
func TestNoHandlerStartsAfterDisconnect(t *testing.T) {
	reg := memory.NewRegistry()
	sub := direct.NewBroker(direct.WithRegistry(reg), direct.WithAddress("127.0.0.1:0"), direct.WithLogger(quiet))
	if err := sub.Connect(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	var started atomic.Int64
	if _, err := sub.Subscribe("slow", func(ctx context.Context, e broker.Event) error {
		started.Add(1)
		time.Sleep(50 * time.Millisecond)
		return nil
	}, broker.MaxConcurrent(1)); err != nil {
		t.Fatal(err)
	}
	pub := brokertest.New(t, factory(reg))
	const n = 20
	acks := make([]<-chan error, n)
	for i := range n {
		acks[i] = broker.PublishAsync(testCtx(t), pub, "slow", &broker.Message{Body: []byte(fmt.Sprint(i))})
	}
	for started.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // the rest are queued behind the first
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Millisecond)
	defer cancel()
	sub.Disconnect(ctx)
	atReturn := started.Load()
	time.Sleep(300 * time.Millisecond)
	if later := started.Load(); later != atReturn {
		t.Fatalf("%d handlers started after Disconnect returned (%d before)", later-atReturn, atReturn)
	}
	ok := 0
	for _, ack := range acks {
		if err := <-ack; err == nil {
			ok++
		}
	}
	if int64(ok) > atReturn {
		t.Fatalf("%d publishes were acknowledged, but only %d handlers ran", ok, atReturn)
	}
	t.Logf("%d handled before Disconnect returned, %d acknowledged, %d refused", atReturn, ok, n-ok)
}

// stuckRegistry never answers a listing or a watch until its caller gives
// up.
type stuckRegistry struct{ resolver.Registry }

func (stuckRegistry) GetService(ctx context.Context, _ string) ([]*resolver.Service, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (stuckRegistry) Watch(ctx context.Context, _ ...resolver.WatchOption) (resolver.Watcher, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// A Publish waiting for a topic's first listing returns when Disconnect
// stops the broker, even with a context that never ends. (It hung for
// ever: the listing it waited for never came.)
func TestPublishWaitingForListingEndsWithDisconnect(t *testing.T) {
	b := direct.NewBroker(direct.WithRegistry(stuckRegistry{memory.NewRegistry()}), direct.WithLogger(quiet))
	if err := b.Connect(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Publish(context.Background(), "t", &broker.Message{Body: []byte("x")}) }()
	time.Sleep(50 * time.Millisecond)
	b.Disconnect(testCtx(t))
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	select {
	case err := <-done:
		if !errors.Is(err, broker.ErrClosed) {
			t.Fatalf("Publish = %v, want ErrClosed", err)
		}
	case <-timer.C:
		t.Fatal("Publish still waiting 5 s after Disconnect")
	}
}

// Idle eviction never closes a connection a Publish has just taken: with
// an idle timeout of a few milliseconds, so that connections are evicted
// between publishes all the time, no Publish fails.
func TestEvictionNeverBreaksAPublish(t *testing.T) {
	reg := memory.NewRegistry()
	sub := brokertest.New(t, factory(reg))
	if _, err := sub.Subscribe("evict", func(context.Context, broker.Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	pub := brokertest.New(t, func(*testing.T) broker.Broker {
		return direct.NewBroker(direct.WithRegistry(reg), direct.WithLogger(quiet), direct.WithIdleTimeout(2*time.Millisecond))
	})
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	for range 4 {
		wg.Go(func() {
			for i := range 300 {
				if err := pub.Publish(testCtx(t), "evict", &broker.Message{Body: []byte(fmt.Sprint(i))}); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				if i%10 == 0 {
					time.Sleep(3 * time.Millisecond) // idle long enough to be evicted
				}
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of 1200 publishes failed while idle connections were evicted: %v", n, firstErr.Load())
	}
}
