package direct

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/proto/delivery"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// FuzzDeliveries feeds any bytes, as a publisher's stream would carry
// them, to a subscriber: they decode (as grpc-go decodes them) or are
// refused, and every delivery they hold is answered exactly once, with
// the code its content calls for; only one for the subscription, its
// topic and within the size limit reaches the handler, with its headers
// and body intact.
func FuzzDeliveries(f *testing.F) {
	const sub, topic, limit = "sub-1", "orders", 64
	for _, seed := range []*delivery.Deliveries{
		{Deliveries: []*delivery.Delivery{{Id: 1, Subscription: sub, Topic: topic, Header: []string{"content-type", "application/json"}, Body: []byte(`{}`)}}},
		{Deliveries: []*delivery.Delivery{{Id: 2, Subscription: "other", Topic: topic}, {Id: 3, Subscription: sub, Topic: "payments"}}},
		{Deliveries: []*delivery.Delivery{{Id: 4, Subscription: sub, Topic: topic, Header: []string{"lone-key"}, Body: make([]byte, 2*limit)}}},
		{Deliveries: []*delivery.Delivery{{Id: 5, Subscription: sub, Topic: topic, TimeoutMs: 1}, {Id: 5, Subscription: sub, Topic: topic}}},
	} {
		b, err := proto.Marshal(seed)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("not protobuf"))
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})

	b := NewBroker(WithRegistry(memory.NewRegistry()), WithAddress("127.0.0.1:0"), WithMaxMessageSize(limit),
		WithLogger(slog.New(slog.DiscardHandler))).(*directBroker)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.Connect(ctx); err != nil {
		f.Fatal(err)
	}
	defer b.Disconnect(ctx)
	var handled atomic.Int64
	var last atomic.Pointer[broker.Message]
	s := &subscription{b: b, id: sub, topic: topic, opts: broker.NewSubscribeOptions(), h: func(_ context.Context, e broker.Event) error {
		handled.Add(1)
		last.Store(e.Message())
		return nil
	}}
	b.mu.Lock()
	b.subs[sub] = s
	b.mu.Unlock()

	f.Fuzz(func(t *testing.T, data []byte) {
		var msg delivery.Deliveries
		if proto.Unmarshal(data, &msg) != nil {
			return // grpc-go ends such a stream with INTERNAL before we see it
		}
		ds := msg.GetDeliveries()
		st := &inStream{b: b, ctx: ctx, slots: make(chan struct{}, len(ds)+1), wake: make(chan struct{}, 1)}
		before := handled.Load()
		want := map[int]codes.Code{}
		for i, d := range ds {
			st.slots <- struct{}{}
			st.deliver(d)
			m := broker.Message{Header: headerMap(d.GetHeader()), Body: d.GetBody()}
			switch {
			case d.GetSubscription() != sub:
				want[i] = codes.NotFound
			case d.GetTopic() != topic, m.Size() > limit:
				want[i] = codes.InvalidArgument
			default:
				want[i] = codes.OK
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(st.slots) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d deliveries never answered", len(st.slots), len(ds))
			}
			time.Sleep(time.Millisecond)
		}
		st.mu.Lock()
		results := st.results
		st.mu.Unlock()
		if len(results) != len(ds) {
			t.Fatalf("%d results for %d deliveries", len(results), len(ds))
		}
		oks := 0
		got := map[uint64][]codes.Code{}
		for _, r := range results {
			got[r.GetId()] = append(got[r.GetId()], codes.Code(r.GetCode()))
		}
		for i, d := range ds {
			codesForID := got[d.GetId()]
			found := false
			for j, c := range codesForID {
				if c == want[i] {
					codesForID = append(codesForID[:j], codesForID[j+1:]...)
					found = true
					break
				}
			}
			got[d.GetId()] = codesForID
			if !found {
				t.Fatalf("delivery %d (id %d): no result %v among %v", i, d.GetId(), want[i], got[d.GetId()])
			}
			if want[i] == codes.OK {
				oks++
			}
		}
		if n := handled.Load() - before; n != int64(oks) {
			t.Fatalf("handler ran %d times for %d acceptable deliveries", n, oks)
		}
		if oks == 1 && len(ds) == 1 {
			m, d := last.Load(), ds[0]
			if string(m.Body) != string(d.GetBody()) || fmt.Sprint(m.Header) != fmt.Sprint(headerMap(d.GetHeader())) {
				t.Fatalf("handler saw %v %q, sent %v %q", m.Header, m.Body, d.GetHeader(), d.GetBody())
			}
		}
	})
}
