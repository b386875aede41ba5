package broker_test

import (
	"errors"
	"strings"
	"testing"
	"unicode"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/microgrpc/microgrpc/broker"
)

// FuzzValidateTopic checks ValidateTopic's fast path for ASCII against the
// rule it states (not empty, no '/', '*' or '>', no white space), and that
// every topic it accepts is one NATS can publish and subscribe to (before,
// "a..b" passed here, nats.go refused it at Subscribe with another error,
// and a publish to it went nowhere).
func FuzzValidateTopic(f *testing.F) {
	for _, topic := range []string{"events", "a.b.c", "a/b", "a.*", "a.>", ">", "a b", "a\tb", "a\u00a0b", "a\u2028b",
		"caf\u00e9", "\xff", "a\x00b", "a..b", ".a", "a.", ".", "", "_INBOX.x", "$JS.API"} {
		f.Add(topic)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		err := broker.ValidateTopic(topic)
		want := topic != "" && !strings.ContainsAny(topic, "/*>") && strings.IndexFunc(topic, unicode.IsSpace) < 0 &&
			!strings.HasPrefix(topic, ".") && !strings.HasSuffix(topic, ".") && !strings.Contains(topic, "..")
		if (err == nil) != want {
			t.Fatalf("ValidateTopic(%q) = %v; the rule says valid=%v", topic, err, want)
		}
		if err != nil {
			if !errors.Is(err, broker.ErrInvalidTopic) {
				t.Fatalf("ValidateTopic(%q) = %v, want ErrInvalidTopic", topic, err)
			}
			return
		}
		if !server.IsValidPublishSubject(topic) {
			t.Fatalf("ValidateTopic accepts %q, which NATS refuses as a subject", topic)
		}
	})
}
