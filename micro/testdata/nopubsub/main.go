// Command nopubsub is a micro service with its defaults that never
// publishes or subscribes: TestOnlyWhatIsUsedIsLinked looks at what its
// binary leaves out.
package main

import (
	"flag"
	"log"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

func main() {
	micro.DefineFlags(flag.CommandLine)
	flag.Parse()
	svc := micro.NewService(micro.WithName("greeter"))
	if err := svc.Init(); err != nil {
		log.Fatal(err)
	}
	pb.RegisterGreeterServer(svc.Server(), &greetertest.Server{Node: svc.ID()})
	if err := svc.Run(); err != nil {
		log.Fatal(err)
	}
}
