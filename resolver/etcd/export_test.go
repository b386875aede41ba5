package etcd

import clientv3 "go.etcd.io/etcd/client/v3"

// WithKVWrapper lets tests observe the registry's KV requests.
func WithKVWrapper(f func(clientv3.KV) clientv3.KV) Option {
	return func(o *options) { o.wrapKV = f }
}
