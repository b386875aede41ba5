package http

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/microgrpc/microgrpc/broker"
)

// The wire format of a delivery request and its answer, in protobuf's
// encoding (written with protowire: no generated code for four fields).
// A request carries a batch of messages for one subscription; the answer
// has one result per message, in order, so each message is acknowledged
// on its own.
//
//	message Batch    { repeated Delivery delivery = 1; }
//	message Delivery { string topic = 1; repeated Header header = 2; bytes body = 3; }
//	message Header   { string key = 1; string value = 2; }
//	message Results  { repeated Result result = 1; }
//	message Result   { Code code = 1; string error = 2; }
const contentType = "application/x-microgrpc-batch"

// code is a message's result.
type code uint64

const (
	codeOK        code = iota // the handler accepted it
	codeRefused               // the handler returned an error
	codeGone                  // the subscription is stopping: try another member
	codeTooLarge              // over the subscriber's size limit
	codeMalformed             // wrong topic, or unreadable
)

type result struct {
	code code
	err  string
}

// delivery is one message of a batch.
type delivery struct {
	topic string
	msg   *broker.Message
}

var errMalformed = errors.New("malformed batch")

func appendDelivery(b []byte, d delivery) []byte {
	n := protowire.SizeTag(1) + protowire.SizeBytes(len(d.topic)) + protowire.SizeTag(3) + protowire.SizeBytes(len(d.msg.Body))
	for k, v := range d.msg.Header {
		n += protowire.SizeTag(2) + protowire.SizeBytes(headerSize(k, v))
	}
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, d.topic)
	for k, v := range d.msg.Header {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(headerSize(k, v)))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	return protowire.AppendBytes(b, d.msg.Body)
}

func headerSize(k, v string) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(len(k)) + protowire.SizeTag(2) + protowire.SizeBytes(len(v))
}

// fields calls f for each field of a message; f consumes the value.
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

// decodeBatch reads a request body. The messages' bodies alias b.
func decodeBatch(b []byte) ([]delivery, error) {
	var out []delivery
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		if num != 1 {
			return -1, nil
		}
		v, n, err := consumeBytes(typ, b)
		if err != nil {
			return 0, err
		}
		d, err := decodeDelivery(v)
		if err != nil {
			return 0, err
		}
		out = append(out, d)
		return n, nil
	})
	return out, err
}

func decodeDelivery(b []byte) (delivery, error) {
	d := delivery{msg: &broker.Message{Header: map[string]string{}}}
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1, 2, 3:
		default:
			return -1, nil
		}
		v, n, err := consumeBytes(typ, b)
		if err != nil {
			return 0, err
		}
		switch num {
		case 1:
			d.topic = string(v)
		case 2:
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
		case 3:
			d.msg.Body = v
		}
		return n, nil
	})
	return d, err
}

func appendResult(b []byte, r result) []byte {
	n := protowire.SizeTag(1) + protowire.SizeVarint(uint64(r.code))
	if r.err != "" {
		n += protowire.SizeTag(2) + protowire.SizeBytes(len(r.err))
	}
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(r.code))
	if r.err != "" {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, r.err)
	}
	return b
}

func decodeResults(b []byte) ([]result, error) {
	var out []result
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		if num != 1 {
			return -1, nil
		}
		v, n, err := consumeBytes(typ, b)
		if err != nil {
			return 0, err
		}
		var r result
		err = fields(v, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
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
		if err != nil {
			return 0, err
		}
		out = append(out, r)
		return n, nil
	})
	return out, err
}

func (r result) error() error {
	switch r.code {
	case codeOK:
		return nil
	case codeGone:
		return errGone
	case codeTooLarge:
		return fmt.Errorf("%w: %s", broker.ErrMessageTooLarge, r.err)
	}
	return errors.New(r.err)
}
