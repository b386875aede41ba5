// Package addr derives the address a server announces from the address
// it is bound to.
package addr

import (
	"fmt"
	"net"
)

// Advertise is the address announced for a listener bound to bound:
// the WithAdvertise value if set, else the bound address with an
// unspecified host replaced by one of this machine's addresses.
func Advertise(advertise string, bound net.Addr) (string, error) {
	if advertise != "" {
		if _, _, err := net.SplitHostPort(advertise); err != nil {
			return "", fmt.Errorf("advertise address %q: %w", advertise, err)
		}
		return advertise, nil
	}
	host, port, err := net.SplitHostPort(bound.String())
	if err != nil {
		return "", fmt.Errorf("bound address %q: %w", bound, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsUnspecified() {
		return bound.String(), nil
	}
	return net.JoinHostPort(hostIP(), port), nil
}

// hostIP picks the address to announce for a wildcard listener: the first
// private IPv4 address of an up interface, then any global unicast one, and
// loopback when the machine has nothing else (e.g. inside a private network
// namespace), as go-micro does.
func hostIP() string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "127.0.0.1"
	}
	var global string
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil {
				continue
			}
			if ipn.IP.IsPrivate() {
				return ipn.IP.String()
			}
			if global == "" && ipn.IP.IsGlobalUnicast() {
				global = ipn.IP.String()
			}
		}
	}
	if global != "" {
		return global
	}
	return "127.0.0.1"
}
