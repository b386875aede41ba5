package micro_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/internal/envconfig"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/pubsub"
	"github.com/microgrpc/microgrpc/plugins"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

func registryName(t *testing.T, svc *micro.Service) string {
	t.Helper()
	reg, err := svc.Registry()
	if err != nil {
		t.Fatal(err)
	}
	return reg.String()
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func initService(t *testing.T, code []micro.Option, environ map[string]string, args ...string) (*micro.Service, error) {
	t.Helper()
	svc := micro.NewService(code...)
	t.Cleanup(func() { svc.Close() })
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	return svc, svc.Init(micro.WithFlagSet(fs), micro.WithArgs(args), micro.WithEnv(env(environ)))
}

func TestInitPrecedence(t *testing.T) {
	code := []micro.Option{micro.WithName("code"), micro.WithVersion("code"), micro.WithAddress("127.0.0.1:1"), micro.WithRegisterTTL(time.Minute)}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    string // name
		version string
		ttl     time.Duration
	}{
		{"code over defaults", nil, nil, "code", "code", time.Minute},
		{"env over code", map[string]string{"MICRO_SERVER_NAME": "env", "MICRO_REGISTER_TTL": "7"}, nil, "env", "code", 7 * time.Second},
		{"flag over env", map[string]string{"MICRO_SERVER_NAME": "env", "MICRO_REGISTER_TTL": "7"}, []string{"--server_name=flag", "--register_ttl=2m"}, "flag", "code", 2 * time.Minute},
		{"flag alone", nil, []string{"-server_version", "v9"}, "code", "v9", time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc, err := initService(t, code, tt.env, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if svc.Name() != tt.want || svc.Version() != tt.version || svc.SettingsForTest().RegisterTTL != tt.ttl {
				t.Fatalf("name %q version %q ttl %v; want %q %q %v", svc.Name(), svc.Version(), svc.SettingsForTest().RegisterTTL, tt.want, tt.version, tt.ttl)
			}
		})
	}
}

func TestInitReadsEverySetting(t *testing.T) {
	environ := map[string]string{
		"MICRO_REGISTRY":               "memory",
		"MICRO_SERVER_NAME":            "n",
		"MICRO_SERVER_VERSION":         "v",
		"MICRO_SERVER_ID":              "id1",
		"MICRO_SERVER_ADDRESS":         "127.0.0.1:9",
		"MICRO_SERVER_ADVERTISE":       "10.0.0.1:9",
		"MICRO_SERVER_METADATA":        "a=1, b=2",
		"MICRO_REGISTER_TTL":           "40s",
		"MICRO_REGISTER_INTERVAL":      "20",
		"MICRO_CLIENT_REQUEST_TIMEOUT": "3s",
		"MICRO_CLIENT_RETRIES":         "4",
	}
	svc, err := initService(t, []micro.Option{micro.WithMetadata(map[string]string{"c": "3"})}, environ)
	if err != nil {
		t.Fatal(err)
	}
	got := svc.SettingsForTest()
	if svc.Name() != "n" || svc.Version() != "v" || svc.ID() != "id1" || got.Address != "127.0.0.1:9" || got.Advertise != "10.0.0.1:9" ||
		got.Metadata["a"] != "1" || got.Metadata["b"] != "2" || got.Metadata["c"] != "3" ||
		got.RegisterTTL != 40*time.Second || got.Interval != 20*time.Second || got.RequestTimeout != 3*time.Second ||
		got.Retries != 4 || registryName(t, svc) != "memory" {
		t.Fatalf("settings not applied: %+v name=%q version=%q id=%q", got, svc.Name(), svc.Version(), svc.ID())
	}
}

func TestInitUnknownPluginListsKnownNames(t *testing.T) {
	_, err := initService(t, nil, map[string]string{"MICRO_REGISTRY": "zookeeper"})
	if !errors.Is(err, plugins.ErrUnknownPlugin) {
		t.Fatalf("Init = %v, want ErrUnknownPlugin", err)
	}
	for _, name := range plugins.Registries() {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not list %q", err, name)
		}
	}
	if !strings.Contains(err.Error(), "zookeeper") {
		t.Errorf("error %q does not name the unknown plugin", err)
	}
}

// A broker is made on first use, but a wrong name still fails at Init, and
// every use after reports the same error.
func TestInitUnknownBrokerFailsAtInit(t *testing.T) {
	svc, err := initService(t, []micro.Option{micro.WithRegistry(memory.NewRegistry())}, map[string]string{"MICRO_BROKER": "kafka"})
	if !errors.Is(err, plugins.ErrUnknownPlugin) || !strings.Contains(err.Error(), "kafka") {
		t.Fatalf("Init = %v, want ErrUnknownPlugin naming kafka", err)
	}
	for _, name := range plugins.Brokers() {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not list %q", err, name)
		}
	}
	if b, berr := svc.Broker(); b != nil || berr == nil || berr.Error() != err.Error() {
		t.Errorf("Broker() after Init = %v, %v; want Init's error", b, berr)
	}
	if perr := pubsub.Publish(context.Background(), svc, "t", map[string]string{}); perr == nil || perr.Error() != err.Error() {
		t.Errorf("Publish after Init = %v; want Init's error", perr)
	}
}

func TestInitRejectsMalformedValues(t *testing.T) {
	for _, environ := range []map[string]string{
		{"MICRO_REGISTER_TTL": "soon"},
		{"MICRO_CLIENT_RETRIES": "-1"},
		{"MICRO_SERVER_METADATA": "novalue"},
	} {
		if _, err := initService(t, nil, environ); !errors.Is(err, envconfig.ErrInvalid) {
			t.Errorf("Init(%v) = %v, want ErrInvalid", environ, err)
		}
	}
}

func TestInitKeepsProgramFlagsAndDocumentsEnv(t *testing.T) {
	fs := flag.NewFlagSet("prog", flag.ContinueOnError)
	var usage bytes.Buffer
	fs.SetOutput(&usage)
	mine := fs.String("mine", "", "the program's own flag")
	svc := micro.NewService()
	defer svc.Close()
	if err := svc.Init(micro.WithFlagSet(fs), micro.WithArgs([]string{"-mine=x", "-server_name=s"}), micro.WithEnv(env(nil))); err != nil {
		t.Fatal(err)
	}
	if *mine != "x" || svc.Name() != "s" {
		t.Fatalf("mine=%q name=%q", *mine, svc.Name())
	}
	fs.PrintDefaults()
	for _, s := range envconfig.All {
		if !strings.Contains(usage.String(), "-"+s.Flag) || !strings.Contains(usage.String(), s.Env) ||
			!strings.Contains(usage.String(), "default: "+s.Default) {
			t.Errorf("-h does not list -%s with %s and its default %q", s.Flag, s.Env, s.Default)
		}
	}
	for _, want := range []string{"MICRO_MDNS_INTERFACES", "default: 30s", "default: 10s", "default: :0"} {
		if !strings.Contains(usage.String(), want) {
			t.Errorf("-h does not say %q:\n%s", want, usage.String())
		}
	}
}

// The defaults -h shows are the ones the code uses.
func TestHelpDefaultsMatchCode(t *testing.T) {
	for _, c := range []struct {
		set  envconfig.Setting
		want string
	}{
		{envconfig.RegisterTTL, micro.DefaultRegisterTTL.String()},
		{envconfig.RegisterInterval, micro.DefaultRegisterInterval.String()},
		{envconfig.Registry, "mdns"},
		{envconfig.Broker, "http"},
	} {
		if !strings.HasPrefix(c.set.Default, strings.TrimSuffix(c.want, "0m0s")) {
			t.Errorf("-%s: -h says default %q, the code uses %q", c.set.Flag, c.set.Default, c.want)
		}
	}
	if !strings.HasPrefix(envconfig.ServerAddress.Default, micro.DefaultAddress) {
		t.Errorf("-server_address: -h says %q, the code uses %q", envconfig.ServerAddress.Default, micro.DefaultAddress)
	}
	svc, err := initService(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := svc.SettingsForTest().RegistryName; got != envconfig.Registry.Default {
		t.Errorf("default registry %q, -h says %q", got, envconfig.Registry.Default)
	}
}

// Words left on the command line after the flags are an error naming
// the first, not silently ignored.
func TestInitRejectsExtraArguments(t *testing.T) {
	_, err := initService(t, nil, nil, "-registry=memory", "etcd")
	if err == nil || !strings.Contains(err.Error(), `unexpected argument "etcd"`) {
		t.Fatalf("Init with a stray argument = %v, want an error naming it", err)
	}
	// "-registry etcd" is fine: the flag takes the next word.
	if _, err := initService(t, nil, nil, "-registry", "memory"); err != nil {
		t.Fatal(err)
	}
}

// --mdns_interfaces and MICRO_MDNS_INTERFACES pick mDNS's interfaces.
func TestInitMDNSInterfaces(t *testing.T) {
	// (These tests run in a private network namespace: lo is all there is.)
	svc, err := initService(t, nil, map[string]string{"MICRO_MDNS_INTERFACES": "eth9"}, "-mdns_interfaces= lo")
	if err != nil {
		t.Fatal(err)
	}
	if got := svc.SettingsForTest().MDNSInterfaces; strings.Join(got, ",") != "lo" {
		t.Fatalf("mDNS interfaces %q, want the flag's [lo]", got)
	}
	// The registry was made with them: a name that does not exist fails.
	_, err = initService(t, nil, map[string]string{"MICRO_MDNS_INTERFACES": "nosuch0"})
	if err == nil || !strings.Contains(err.Error(), "nosuch0") {
		t.Fatalf("Init with MICRO_MDNS_INTERFACES=nosuch0 = %v, want an error naming it", err)
	}
}

func TestInitAfterProgramParsedFlags(t *testing.T) {
	fs := flag.NewFlagSet("prog", flag.ContinueOnError)
	micro.DefineFlags(fs)
	listen := fs.String("listen", "", "")
	if err := fs.Parse([]string{"-listen=:1", "-server_name=parsed"}); err != nil {
		t.Fatal(err)
	}
	svc := micro.NewService(micro.WithName("code"))
	defer svc.Close()
	if err := svc.Init(micro.WithFlagSet(fs), micro.WithEnv(env(nil))); err != nil {
		t.Fatal(err)
	}
	if *listen != ":1" || svc.Name() != "parsed" {
		t.Fatalf("listen=%q name=%q", *listen, svc.Name())
	}
}
