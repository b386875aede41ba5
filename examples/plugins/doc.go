// Package plugins holds the test of the plugins example: a third-party
// registry plugin selected by flag and environment.
package plugins
