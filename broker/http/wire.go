package http

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/microgrpc/microgrpc/broker"
)

// The wire format. A publisher opens one connection to each subscriber
// process (an HTTP/1.1 request upgraded to this protocol) and sends frames
// on it; the subscriber answers each with a result frame carrying the same
// sequence number, in whatever order the handlers finish. Many messages,
// for any of the process's subscriptions, are in flight at once, and
// frames written while a write is in progress leave in the same socket
// write. A frame is
//
//	uvarint seq, uvarint length, payload
//
// and the payloads are protobuf's encoding (written with protowire: no
// generated code for a few fields):
//
//	message Delivery { string sub = 1; string topic = 2; repeated Header header = 3; bytes body = 4; }
//	message Header   { string key = 1; string value = 2; }
//	message Result   { Code code = 1; string error = 2; }
const (
	upgradeProtocol = "microgrpc-broker/1"
	streamPath      = "/micro/broker/stream"
)

// code is a message's result.
type code uint64

const (
	codeOK        code = iota // the handler accepted it
	codeRefused               // the handler returned an error
	codeGone                  // the subscription is stopping: try another member
	codeTooLarge              // over the subscriber's size limit
	codeMalformed             // wrong topic, or unreadable
	codeBusy                  // too many deliveries waiting: try another member
)

type result struct {
	code code
	err  string
}

// delivery is one message for one subscription.
type delivery struct {
	sub   string
	topic string
	msg   *broker.Message
}

var errMalformed = errors.New("malformed frame")

func deliverySize(d delivery) int {
	n := protowire.SizeTag(1) + protowire.SizeBytes(len(d.sub)) +
		protowire.SizeTag(2) + protowire.SizeBytes(len(d.topic)) +
		protowire.SizeTag(4) + protowire.SizeBytes(len(d.msg.Body))
	for k, v := range d.msg.Header {
		n += protowire.SizeTag(3) + protowire.SizeBytes(headerSize(k, v))
	}
	return n
}

func appendDelivery(b []byte, d delivery) []byte {
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, d.sub)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, d.topic)
	for k, v := range d.msg.Header {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(headerSize(k, v)))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	return protowire.AppendBytes(b, d.msg.Body)
}

func headerSize(k, v string) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(len(k)) + protowire.SizeTag(2) + protowire.SizeBytes(len(v))
}

// fields calls f for each field of a message; f consumes the value, or
// returns -1 to skip it.
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, b []byte) (int, error)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		m, err := f(num, typ, b)
		if err != nil {
			return err
		}
		if m < 0 {
			if m = protowire.ConsumeFieldValue(num, typ, b); m < 0 {
				return errMalformed
			}
		}
		b = b[m:]
	}
	return nil
}

func consumeBytes(typ protowire.Type, b []byte) ([]byte, int, error) {
	if typ != protowire.BytesType {
		return nil, 0, errMalformed
	}
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return nil, 0, errMalformed
	}
	return v, n, nil
}

// decodeDelivery reads a delivery payload; the body aliases b.
func decodeDelivery(b []byte) (delivery, error) {
	d := delivery{msg: &broker.Message{Header: map[string]string{}}}
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		if num < 1 || num > 4 {
			return -1, nil
		}
		v, n, err := consumeBytes(typ, b)
		if err != nil {
			return 0, err
		}
		switch num {
		case 1:
			d.sub = string(v)
		case 2:
			d.topic = string(v)
		case 3:
			var k, val string
			err := fields(v, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
				if num != 1 && num != 2 {
					return -1, nil
				}
				s, n, err := consumeBytes(typ, b)
				if num == 1 {
					k = string(s)
				} else {
					val = string(s)
				}
				return n, err
			})
			if err != nil {
				return 0, err
			}
			d.msg.Header[k] = val
		case 4:
			d.msg.Body = v
		}
		return n, nil
	})
	return d, err
}

func resultSize(r result) int {
	n := protowire.SizeTag(1) + protowire.SizeVarint(uint64(r.code))
	if r.err != "" {
		n += protowire.SizeTag(2) + protowire.SizeBytes(len(r.err))
	}
	return n
}

func appendResult(b []byte, r result) []byte {
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(r.code))
	if r.err != "" {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, r.err)
	}
	return b
}

func decodeResult(b []byte) (result, error) {
	var r result
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch {
		case num == 1 && typ == protowire.VarintType:
			c, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, errMalformed
			}
			r.code = code(c)
			return n, nil
		case num == 2:
			s, n, err := consumeBytes(typ, b)
			r.err = string(s)
			return n, err
		}
		return -1, nil
	})
	return r, err
}

// readFrameHeader reads a frame's sequence number and payload length.
func readFrameHeader(r *bufio.Reader) (seq, n uint64, err error) {
	if seq, err = binary.ReadUvarint(r); err != nil {
		return 0, 0, err
	}
	n, err = binary.ReadUvarint(r)
	return seq, n, err
}

func (r result) error() error {
	switch r.code {
	case codeOK:
		return nil
	case codeGone:
		return errGone
	case codeBusy:
		return fmt.Errorf("%w: %s", errBusy, r.err)
	case codeTooLarge:
		return fmt.Errorf("%w: %s", broker.ErrMessageTooLarge, r.err)
	}
	return errors.New(r.err)
}
