// Package pubsub holds the test of the pub/sub example: a publisher, a
// subscriber and a queue group of two, as separate processes.
package pubsub
