// Package version holds the build's version, set at link time with
// -ldflags "-X github.com/sightline-io/sightline/internal/version.Version=v0.1.0".
package version

// Version is overwritten by the linker for release builds.
var Version = "dev"
