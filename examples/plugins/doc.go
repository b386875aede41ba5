// Package plugins holds the test of the plugins example: a third-party
// registry plugin selected by flag and environment. That the plugin keeps
// the registry contract is fileregistry's own test, which runs the
// conformance kit resolver/registrytest as any registry plugin can.
package plugins
