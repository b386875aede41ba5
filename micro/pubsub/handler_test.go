package pubsub

import (
	"context"
	"errors"
	"strings"
	"testing"

	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

func TestNewSubscriberFunc(t *testing.T) {
	type plain struct{ A int }
	good := []any{
		func(context.Context, *pb.Event) error { return nil },
		func(context.Context, *plain) error { return nil },
	}
	for _, h := range good {
		if _, err := newSubscriberFunc(h); err != nil {
			t.Errorf("newSubscriberFunc(%T) = %v", h, err)
		}
	}
	var nilFunc func(context.Context, *pb.Event) error
	bad := []struct {
		h    any
		want string
	}{
		{nil, "nil"},
		{nilFunc, "nil"},
		{42, "not a function"},
		{func(*pb.Event) error { return nil }, "number of arguments"},
		{func(context.Context, *pb.Event) {}, "number of arguments"},
		{func(string, *pb.Event) error { return nil }, "not context.Context"},
		{func(context.Context, struct{ A int }) error { return nil }, "not a pointer to a struct"},
		{func(context.Context, *string) error { return nil }, "not a pointer to a struct"},
		{func(context.Context, *pb.Event) string { return "" }, "not error"},
		{func(context.Context, ...*pb.Event) error { return nil }, "number of arguments"},
	}
	for _, tt := range bad {
		_, err := newSubscriberFunc(tt.h)
		if !errors.Is(err, ErrInvalidHandler) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("newSubscriberFunc(%T) = %v, want ErrInvalidHandler saying %q", tt.h, err, tt.want)
		}
	}
}

func TestSubscriberFuncCalls(t *testing.T) {
	var got string
	f, err := newSubscriberFunc(func(_ context.Context, e *pb.Event) error {
		got = e.GetMessage()
		return errors.New("handler error")
	})
	if err != nil {
		t.Fatal(err)
	}
	msg := f.newMsg()
	msg.(*pb.Event).Message = "hi"
	if err := f.call(context.Background(), msg); err == nil || err.Error() != "handler error" || got != "hi" {
		t.Fatalf("call = %v, got %q", err, got)
	}
}
