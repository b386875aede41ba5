package http

import "github.com/microgrpc/microgrpc/broker"

// Topics is how many topics b follows the subscribers of.
func Topics(b broker.Broker) int {
	hb := b.(*httpBroker)
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return len(hb.topics)
}

const StreamPath = streamPath
