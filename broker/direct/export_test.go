package direct

import "github.com/microgrpc/microgrpc/broker"

// Topics is how many topics b follows the subscribers of.
func Topics(b broker.Broker) int {
	db := b.(*directBroker)
	db.mu.Lock()
	defer db.mu.Unlock()
	return len(db.topics)
}

// Peers is how many subscriber nodes b keeps a connection to.
func Peers(b broker.Broker) int {
	db := b.(*directBroker)
	db.mu.Lock()
	defer db.mu.Unlock()
	return len(db.peers)
}
