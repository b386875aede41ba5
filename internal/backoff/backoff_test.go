package backoff

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDelayGrowsToTheCap(t *testing.T) {
	for _, c := range []struct {
		name string
		r    float64 // what randFloat returns
		want []time.Duration
	}{
		{"no jitter", 0.5, []time.Duration{100 * time.Millisecond, 160 * time.Millisecond, 256 * time.Millisecond, 409600 * time.Microsecond, 500 * time.Millisecond, 500 * time.Millisecond}},
		{"lowest jitter", 0, []time.Duration{80 * time.Millisecond, 128 * time.Millisecond}},
		{"highest jitter", 1, []time.Duration{120 * time.Millisecond, 192 * time.Millisecond}},
	} {
		t.Run(c.name, func(t *testing.T) {
			old := randFloat
			randFloat = func() float64 { return c.r }
			t.Cleanup(func() { randFloat = old })
			p := Policy{Min: 100 * time.Millisecond, Max: 500 * time.Millisecond}
			for i, want := range c.want {
				if got := p.Delay(i); got != want {
					t.Errorf("Delay(%d) = %v, want %v", i, got, want)
				}
			}
		})
	}
}

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !Sleep(ctx, time.Millisecond, nil) {
		t.Fatal("Sleep with a live ctx reported false")
	}
	wake := make(chan struct{}, 1)
	wake <- struct{}{}
	start := time.Now()
	if !Sleep(ctx, time.Hour, wake) || time.Since(start) > 5*time.Second {
		t.Fatal("a wake-up did not end Sleep")
	}
	done, cancelDone := context.WithCancel(ctx)
	cancelDone()
	if Sleep(done, time.Hour, nil) {
		t.Fatal("Sleep with an ended ctx reported true")
	}
}
