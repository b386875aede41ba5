// Package all adds every plugin of this module to those a micro service
// can choose by flag: mdns, etcd and memory registries; http, nats,
// jetstream and memory brokers. Import it for its side effect in programs
// that should take any of them from the command line:
//
//	import _ "github.com/microgrpc/microgrpc/plugins/all"
package all

import (
	_ "github.com/microgrpc/microgrpc/broker/direct"   // http
	_ "github.com/microgrpc/microgrpc/plugins/builtin" // mdns, memory; memory
	_ "github.com/microgrpc/microgrpc/plugins/etcd"    // etcd
	_ "github.com/microgrpc/microgrpc/plugins/nats"    // nats, jetstream
)
