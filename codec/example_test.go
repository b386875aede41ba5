package codec_test

import (
	"encoding/json"
	"fmt"

	"github.com/microgrpc/microgrpc/codec"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// The broker's view: encode by content-type, decode by the content-type
// the message carries.
func ExampleMarshal() {
	data, err := codec.Marshal("application/json", &pb.Event{Id: "1", Message: "hi"})
	if err != nil {
		fmt.Println(err)
	}
	// protojson varies its whitespace on purpose; do not compare bytes.
	fmt.Println(json.Valid(data))

	var ev pb.Event
	if err := codec.Unmarshal("application/json; charset=utf-8", data, &ev); err != nil {
		fmt.Println(err)
	}
	fmt.Println(ev.GetMessage())
	// Output:
	// true
	// hi
}
