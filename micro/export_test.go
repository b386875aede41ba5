package micro

import "time"

// Settings exposes effective options to the black-box tests.
type Settings struct {
	Address, Advertise    string
	Metadata              map[string]string
	RegisterTTL, Interval time.Duration
	RequestTimeout        time.Duration
	Retries               int
	RegistryName          string
	RegistryAddrs         []string
	MDNSInterfaces        []string
}

func (s *Service) SettingsForTest() Settings {
	r := -1
	if s.opts.retries != nil {
		r = *s.opts.retries
	}
	return Settings{
		Address: s.opts.address, Advertise: s.opts.advertise, Metadata: s.opts.metadata,
		RegisterTTL: s.opts.registerTTL, Interval: s.opts.registerInterval,
		RequestTimeout: s.opts.requestTimeout, Retries: r,
		RegistryName: s.opts.registryName, RegistryAddrs: s.opts.registryAddrs,
		MDNSInterfaces: s.opts.mdnsInterfaces,
	}
}

// SetRequestWaitForTest sets the wait of the request memory bound of the
// services started from now on; restore puts the default back.
func SetRequestWaitForTest(d time.Duration) (restore func()) {
	requestWait = d
	return func() { requestWait = DefaultRequestWait }
}
