package micro_test

// The tests choose every plugin by name, as programs do by flag.
import _ "github.com/microgrpc/microgrpc/plugins/all"
