//go:build linux

package netns_test

import (
	"net"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/internal/netns"
)

func TestMain(m *testing.M) { netns.VerifyTestMain(m) }

func TestInsidePrivateNamespace(t *testing.T) {
	if !netns.Inside() {
		t.Fatal("tests are not running inside the namespace")
	}
	if err := netns.CheckPrivate(); err != nil {
		t.Fatal(err)
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if lo.Flags&net.FlagUp == 0 || lo.Flags&net.FlagMulticast == 0 {
		t.Fatalf("lo flags %v, want up and multicast", lo.Flags)
	}
}

// Multicast on lo works inside: a datagram to the mDNS group comes back.
func TestMulticastOnLoopback(t *testing.T) {
	lo, _ := net.InterfaceByName("lo")
	group := &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}
	conn, err := net.ListenMulticastUDP("udp4", lo, group)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	out, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, group)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := out.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, _, err := conn.ReadFromUDP(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("multicast read = %q, %v", buf[:n], err)
	}
}
