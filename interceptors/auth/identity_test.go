package auth

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAllowMostSpecificRuleDecides(t *testing.T) {
	rules := Allow{
		"/greeter.Greeter/Hello": {"spiffe://a"},
		"/greeter.Greeter/*":     {"spiffe://b"},
		"*":                      {"spiffe://admin"},
		"/open.Open/*":           {"*"},
	}
	for _, c := range []struct {
		method, id     string
		ok, hasMatched bool
	}{
		{"/greeter.Greeter/Hello", "spiffe://a", true, true},
		{"/greeter.Greeter/Hello", "spiffe://b", false, true}, // the method's own rule wins
		{"/greeter.Greeter/Chat", "spiffe://b", true, true},
		{"/greeter.Greeter/Chat", "spiffe://admin", false, true},
		{"/other.Other/Get", "spiffe://admin", true, true},
		{"/open.Open/Get", "anyone", true, true},
	} {
		ok, matched := rules.allowed(c.method, c.id)
		if ok != c.ok || matched != c.hasMatched {
			t.Errorf("allowed(%s, %s) = %v, %v; want %v, %v", c.method, c.id, ok, matched, c.ok, c.hasMatched)
		}
	}
	if ok, matched := (Allow{"/a.A/*": {"x"}}).allowed("/b.B/M", "x"); ok || matched {
		t.Errorf("a method no rule names: %v, %v; want refused, unmatched", ok, matched)
	}
	if !(Allow{"/a.A/*": {"x"}}).exempt() || (Allow{"/grpc.health.v1.Health/*": {"x"}}).exempt() {
		t.Error("health is exempt unless the rules name it")
	}
}
