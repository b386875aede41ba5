// Package txt encodes a registry node into DNS-SD TXT strings and back.
//
// Each TXT string is "key=value" and at most 255 bytes (RFC 6763 §6.1). A
// longer entry is split into numbered parts, "key#0=...", "key#1=...",
// reassembled in order when decoding. Keys: svc, id, v (version), a
// (address to dial), ttl (seconds), h (the node's health service name),
// m.<k> (node metadata), s.<k> (service
// metadata), e (one endpoint: "<flags>:<name>", flags c and/or s for
// client/server streaming).
//
// The whole record is kept within Budget bytes, what fits in one Ethernet
// frame with the rest of an answer (RFC 6763 §6.2). When it would not fit,
// endpoints are dropped first (clients do not need them to call the
// service); Encode reports how many. If the record still does not fit,
// Encode fails: the node's metadata is too large for mDNS.
//
// The strings are in the form github.com/miekg/dns keeps TXT strings in,
// which zeroconf hands them to and the browser receives them in: '"' and
// '\' are escaped with '\', and bytes outside printable ASCII are written
// \DDD. Encode escapes and Decode unescapes, so any bytes (UTF-8 included)
// travel as they are. A metadata key cannot hold '=' (RFC 6763 §6.4).
package txt

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/microgrpc/microgrpc/resolver"
)

// Budget is the largest whole TXT record Encode produces, in wire bytes
// (each string costs its length plus one).
const Budget = 1300

// MaxTTL is the longest TTL Decode accepts, in seconds: DNS's own limit
// (RFC 2181 §8), and far from overflowing a time.Duration.
const MaxTTL = 1<<31 - 1

// maxString is the longest TXT string.
const maxString = 255

// maxKey is the longest key (with its "m." or "s." prefix), so that every
// part of a split entry has room for its value: RFC 6763 §6.4 asks for
// keys of at most nine bytes.
const maxKey = 130

// ErrTooLarge is returned when a node does not fit in Budget even without
// endpoints.
var ErrTooLarge = errors.New("mdns: node data too large for a TXT record")

// ErrBadKey is returned for a metadata key that a TXT string cannot carry:
// one holding '=' or longer than 128 bytes.
var ErrBadKey = errors.New("mdns: metadata key cannot be carried in a TXT record")

// Node is what a TXT record carries.
type Node struct {
	Service *resolver.Service // one node
	TTL     int               // seconds
}

// Encode returns the TXT strings for node n of s, and how many endpoints
// had to be dropped to fit. A TTL over MaxTTL is written as MaxTTL.
func Encode(s *resolver.Service, n resolver.Node, ttlSeconds int) ([]string, int, error) {
	ttlSeconds = min(ttlSeconds, MaxTTL)
	base := []kv{{"svc", s.Name}, {"id", n.ID}, {"a", n.Address}, {"ttl", strconv.Itoa(ttlSeconds)}}
	if s.Version != "" {
		base = append(base, kv{"v", s.Version})
	}
	if n.HealthService != "" {
		base = append(base, kv{"h", n.HealthService})
	}
	for _, k := range slices.Sorted(maps.Keys(n.Metadata)) {
		base = append(base, kv{"m." + k, n.Metadata[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(s.Metadata)) {
		base = append(base, kv{"s." + k, s.Metadata[k]})
	}
	for _, e := range base {
		switch {
		case strings.Contains(e.k, "="):
			return nil, 0, fmt.Errorf("%w: node %q of %q: key %q holds '='", ErrBadKey, n.ID, s.Name, e.k[2:])
		case len(e.k) > maxKey:
			return nil, 0, fmt.Errorf("%w: node %q of %q: key %.20q... is %d bytes, limit %d", ErrBadKey, n.ID, s.Name, e.k[2:], len(e.k)-2, maxKey-2)
		case len(e.k)+len(e.v) >= Budget:
			return nil, 0, fmt.Errorf("%w: node %q of %q: value of %q is %d bytes, limit %d", ErrTooLarge, n.ID, s.Name, e.k, len(e.v), Budget)
		}
	}
	out := split(base)
	if size(out) > Budget {
		return nil, 0, fmt.Errorf("%w: node %q of %q needs %d bytes without endpoints, limit %d", ErrTooLarge, n.ID, s.Name, size(out), Budget)
	}
	dropped := 0
	for i, e := range s.Endpoints {
		flags := ""
		if e.ClientStreaming {
			flags += "c"
		}
		if e.ServerStreaming {
			flags += "s"
		}
		strs := split([]kv{{"e", flags + ":" + e.Name}})
		if size(out)+size(strs) > Budget {
			dropped = len(s.Endpoints) - i
			break
		}
		out = append(out, strs...)
	}
	for i, str := range out {
		out[i] = escape(str)
	}
	return out, dropped, nil
}

type kv struct{ k, v string }

// split turns entries into TXT strings, splitting long ones into parts.
func split(entries []kv) []string {
	var out []string
	for _, e := range entries {
		whole := e.k + "=" + e.v
		if len(whole) <= maxString && !strings.Contains(e.k, "#") {
			out = append(out, whole)
			continue
		}
		v := e.v
		for part := 0; ; part++ {
			prefix := e.k + "#" + strconv.Itoa(part) + "="
			n := min(len(v), maxString-len(prefix))
			out = append(out, prefix+v[:n])
			v = v[n:]
			if v == "" {
				break
			}
		}
	}
	return out
}

func size(strs []string) int {
	n := 0
	for _, s := range strs {
		n += len(s) + 1
	}
	return n
}

// Decode reassembles a node from TXT strings.
func Decode(strs []string) (*Node, error) {
	type part struct {
		idx int
		v   string
	}
	parts := map[string][]part{}
	var order []string
	var endpoints []string
	lastPart := -1 // of the last endpoint; -1 when it was not split
	for _, s := range strs {
		k, v, ok := strings.Cut(unescape(s), "=")
		if !ok {
			continue // a boolean attribute: not ours
		}
		idx := -1
		// The part number follows the last '#': a metadata key may hold
		// '#' itself (Encode always splits such a key into parts).
		if i := strings.LastIndexByte(k, '#'); i >= 0 {
			n, err := strconv.Atoi(k[i+1:])
			if err != nil {
				return nil, fmt.Errorf("mdns: bad TXT part key %q", k)
			}
			k, idx = k[:i], n
		}
		if k == "e" {
			// Every endpoint is its own entry, and a split one's parts
			// come in order: "e#0" starts an endpoint, "e#1" and on
			// continue it.
			switch {
			case idx <= 0:
				endpoints = append(endpoints, v)
			case idx == lastPart+1:
				endpoints[len(endpoints)-1] += v
			default:
				return nil, fmt.Errorf("mdns: TXT endpoint part e#%d out of order", idx)
			}
			lastPart = idx
			continue
		}
		if _, seen := parts[k]; !seen {
			order = append(order, k)
		}
		parts[k] = append(parts[k], part{idx, v})
	}
	val := map[string]string{}
	for _, k := range order {
		ps := parts[k]
		sort.Slice(ps, func(i, j int) bool { return ps[i].idx < ps[j].idx })
		var b strings.Builder
		for _, p := range ps {
			b.WriteString(p.v)
		}
		val[k] = b.String()
	}
	if val["svc"] == "" || val["id"] == "" || val["a"] == "" {
		return nil, errors.New("mdns: TXT record lacks svc, id or a")
	}
	ttl, err := strconv.Atoi(val["ttl"])
	if err != nil || ttl <= 0 || ttl > MaxTTL {
		return nil, fmt.Errorf("mdns: bad ttl %q (want 1 to %d seconds)", val["ttl"], MaxTTL)
	}
	s := &resolver.Service{Name: val["svc"], Version: val["v"]}
	node := resolver.Node{ID: val["id"], Address: val["a"], HealthService: val["h"]}
	for k, v := range val {
		switch {
		case strings.HasPrefix(k, "m."):
			if node.Metadata == nil {
				node.Metadata = map[string]string{}
			}
			node.Metadata[k[2:]] = v
		case strings.HasPrefix(k, "s."):
			if s.Metadata == nil {
				s.Metadata = map[string]string{}
			}
			s.Metadata[k[2:]] = v
		}
	}
	for _, e := range endpoints {
		flags, name, ok := strings.Cut(e, ":")
		if !ok {
			continue
		}
		s.Endpoints = append(s.Endpoints, resolver.Endpoint{Name: name,
			ClientStreaming: strings.Contains(flags, "c"), ServerStreaming: strings.Contains(flags, "s")})
	}
	s.Nodes = []resolver.Node{node}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("mdns: TXT record of an invalid node: %w", err)
	}
	return &Node{Service: s, TTL: ttl}, nil
}

// escape writes a TXT string as github.com/miekg/dns unpacks it from the
// wire (and packs it back with unescape's rules).
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescape returns the bytes a TXT string stands for, as github.com/miekg/dns
// packs it: \DDD is the byte DDD, '\' and another byte is that byte, and
// a '\' that ends the string is dropped.
func unescape(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b = append(b, s[i])
			continue
		}
		i++
		switch {
		case i == len(s):
		case i+2 < len(s) && isDigit(s[i]) && isDigit(s[i+1]) && isDigit(s[i+2]):
			b = append(b, (s[i]-'0')*100+(s[i+1]-'0')*10+(s[i+2]-'0'))
			i += 2
		default:
			b = append(b, s[i])
		}
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
