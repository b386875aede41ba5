package randomhash

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"
)

// callState is what one call tells the picker, and what the picker
// remembers across the call's attempts (grpc-go gives every attempt of a
// call the same context).
type callState struct {
	key      string
	hasKey   bool
	node     string
	version  string
	metadata [][2]string
	// stream: the call is a stream, whose length says nothing of the
	// node's latency (load.go).
	stream bool

	mu    sync.Mutex
	tried []string // node ids picked by earlier attempts
	last  *outlier // of the node picked last (misserve.go)
	// first backs tried for the usual call of one attempt, so that
	// recording it allocates nothing.
	first [1]string
}

type callStateKey struct{}

func callStateFrom(ctx context.Context) *callState {
	cs, _ := ctx.Value(callStateKey{}).(*callState)
	return cs
}

func (cs *callState) addTried(id string, o *outlier) {
	cs.mu.Lock()
	cs.tried = append(cs.tried, id)
	cs.last = o
	cs.mu.Unlock()
}

func (cs *callState) filtered() bool {
	return cs.node != "" || cs.version != "" || len(cs.metadata) > 0
}

// describeFilter names the call's filters for error messages.
func (cs *callState) describeFilter() string {
	s := ""
	if cs.node != "" {
		s = "node=" + cs.node
	}
	if cs.version != "" {
		if s != "" {
			s += ", "
		}
		s += "version=" + cs.version
	}
	for _, kv := range cs.metadata {
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("metadata %s=%s", kv[0], kv[1])
	}
	return s
}

// CallOption is a per-call option of this policy. It reaches the picker
// only through UnaryClientInterceptor / StreamClientInterceptor (installed
// by DialOptions and by micro services).
type CallOption struct {
	grpc.EmptyCallOption
	apply func(*callState)
}

// WithHashKey sends calls with the same key to the same node while the node
// set is unchanged (rendezvous hashing: when a node joins or leaves, only
// the keys it wins or held move). A retry goes to the key's next node. A
// call without a key is balanced at random.
func WithHashKey(key string) CallOption {
	return CallOption{apply: func(cs *callState) { cs.key, cs.hasKey = key, true }}
}

// FilterVersion restricts the call to nodes of the given registry version
// (go-micro's FilterVersion), e.g. canary routing to "v2". When no node
// matches, the call fails with UNAVAILABLE naming the filter.
func FilterVersion(v string) CallOption {
	return CallOption{apply: func(cs *callState) { cs.version = v }}
}

// FilterNode restricts the call to one node: the one with this registry
// node id (for endpoints from another resolver, this address). It is for
// looking at one node from outside (the micro command's --node); a retry
// goes to the same node again. When the node is not in the service's node
// list the call fails with UNAVAILABLE naming the filter.
func FilterNode(id string) CallOption {
	return CallOption{apply: func(cs *callState) { cs.node = id }}
}

// FilterMetadata restricts the call to nodes whose metadata has key=value
// (go-micro's FilterLabel). Several filters must all match.
func FilterMetadata(key, value string) CallOption {
	return CallOption{apply: func(cs *callState) { cs.metadata = append(cs.metadata, [2]string{key, value}) }}
}

// withCallState puts a fresh call state, filled from the call options, in
// ctx.
func withCallState(ctx context.Context, opts []grpc.CallOption) (context.Context, *callState) {
	cs := &callState{}
	cs.tried = cs.first[:0]
	for _, o := range opts {
		if co, ok := o.(CallOption); ok && co.apply != nil {
			co.apply(cs)
		}
	}
	return context.WithValue(ctx, callStateKey{}, cs), cs
}

// UnaryClientInterceptor gives each call the state the picker uses to
// avoid nodes that already failed it and to apply this policy's call
// options. A node that answers that it lacks the call's service (a record
// pointing at another gRPC server) is ejected, and the call sent to
// another node (misserve.go).
func UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		ctx, cs := withCallState(ctx, opts)
		return invokeAvoidingMisserved(ctx, cs, method, req, reply, cc, invoker, opts)
	}
}

// StreamClientInterceptor is UnaryClientInterceptor for streams; a stream
// to a node that lacks its service fails, but ejects the node.
func StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		ctx, cs := withCallState(ctx, opts)
		cs.stream = true
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			cs.misserved(err, method)
			return nil, err
		}
		return &misserveStream{ClientStream: s, cs: cs, method: method}, nil
	}
}

// PickedNode returns the node id the policy picked for the current attempt
// of the call whose context is ctx (the last one, after retries), or ""
// when the call has no state from this package's interceptors or no pick
// was made yet. Stats handlers use it to name the node of each attempt.
func PickedNode(ctx context.Context) string {
	cs := callStateFrom(ctx)
	if cs == nil {
		return ""
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.tried) == 0 {
		return ""
	}
	return cs.tried[len(cs.tried)-1]
}
