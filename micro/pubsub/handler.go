package pubsub

import (
	"context"
	"errors"
	"fmt"
	"reflect"
)

// ErrInvalidHandler is wrapped by the error RegisterSubscriber returns for a
// handler of the wrong shape.
var ErrInvalidHandler = errors.New("pubsub: invalid subscriber handler")

var (
	ctxType = reflect.TypeFor[context.Context]()
	errType = reflect.TypeFor[error]()
)

// subscriberFunc is a checked subscriber handler: newMsg makes a fresh
// value of the handler's argument type, call runs the handler on it.
type subscriberFunc struct {
	argType reflect.Type // *T
	fn      reflect.Value
}

// newSubscriberFunc checks that h is a func(context.Context, *T) error for
// some struct type T (a generated proto message, or a plain struct for
// JSON), and wraps it.
func newSubscriberFunc(h any) (*subscriberFunc, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: nil", ErrInvalidHandler)
	}
	v := reflect.ValueOf(h)
	t := v.Type()
	const want = "want func(context.Context, *T) error, with T a message type such as *pb.Event"
	if t.Kind() != reflect.Func {
		return nil, fmt.Errorf("%w: %T is not a function; %s", ErrInvalidHandler, h, want)
	}
	if v.IsNil() {
		return nil, fmt.Errorf("%w: nil %T; %s", ErrInvalidHandler, h, want)
	}
	if t.NumIn() != 2 || t.NumOut() != 1 || t.IsVariadic() {
		return nil, fmt.Errorf("%w: %s has the wrong number of arguments or results; %s", ErrInvalidHandler, t, want)
	}
	if t.In(0) != ctxType {
		return nil, fmt.Errorf("%w: %s: first argument is %s, not context.Context; %s", ErrInvalidHandler, t, t.In(0), want)
	}
	arg := t.In(1)
	if arg.Kind() != reflect.Pointer || arg.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("%w: %s: second argument %s is not a pointer to a struct; %s", ErrInvalidHandler, t, arg, want)
	}
	if t.Out(0) != errType {
		return nil, fmt.Errorf("%w: %s: result is %s, not error; %s", ErrInvalidHandler, t, t.Out(0), want)
	}
	return &subscriberFunc{argType: arg, fn: v}, nil
}

// newMsg returns a new *T.
func (f *subscriberFunc) newMsg() any { return reflect.New(f.argType.Elem()).Interface() }

// call runs the handler with msg, which must come from newMsg.
func (f *subscriberFunc) call(ctx context.Context, msg any) error {
	out := f.fn.Call([]reflect.Value{reflect.ValueOf(ctx), reflect.ValueOf(msg)})
	err, _ := out[0].Interface().(error)
	return err
}
