package randomhash

import (
	"testing"
	"time"
)

// A node that keeps failing to connect is left out longer each time, and
// comes back as a candidate when its backoff ends.
func TestSubsetFailureBackoffGrowsAndExpires(t *testing.T) {
	s := &subset{
		byID:    map[string]int{"a": 0, "b": 1},
		members: map[string]bool{"a": true},
		pinned:  map[string]bool{"a": true},
		failed:  map[string]time.Time{},
		strikes: map[string]int{},
	}
	now := time.Unix(1000, 0)
	var last time.Duration
	for i := range 8 {
		s.members["a"] = true
		s.fail("a", now)
		if s.members["a"] || s.pinned["a"] {
			t.Fatal("a failed node stays a member")
		}
		d := s.failed["a"].Sub(now)
		lo, hi := float64(failedBackoff.Min)*0.8, float64(failedBackoff.Max)*1.2
		if float64(d) < lo || float64(d) > hi {
			t.Fatalf("failure %d: left out for %v, want within [%v, %v]", i+1, d, time.Duration(lo), time.Duration(hi))
		}
		if i > 0 && d < last && d < time.Duration(float64(failedBackoff.Max)*0.8) {
			t.Fatalf("failure %d: left out for %v, less than the %v before", i+1, d, last)
		}
		last = d
		if ended, next := s.expire(now.Add(d - time.Millisecond)); ended || !next.Equal(s.failed["a"]) {
			t.Fatalf("before its end: ended %v, next %v", ended, next)
		}
		if s.untried() != 1 { // b
			t.Fatalf("untried %d, want 1", s.untried())
		}
	}
	if ended, next := s.expire(now.Add(time.Hour)); !ended || !next.IsZero() {
		t.Fatalf("after its end: ended %v, next %v", ended, next)
	}
	if s.untried() != 2 {
		t.Fatalf("untried %d after the backoff, want 2", s.untried())
	}
	if s.strikes["a"] != 8 {
		t.Fatalf("strikes %d, want 8 (kept after the backoff)", s.strikes["a"])
	}
}
