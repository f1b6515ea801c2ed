package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at build time: go build -ldflags "-X main.version=v1.2.3 -X main.commit=abc123".
var (
	version = "dev"
	commit  = ""
)

// versionString is the version, the commit (from the build flags, or the
// build info when built from a checkout) and the Go version.
func versionString() string {
	c := commit
	if c == "" {
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	if len(c) > 12 {
		c = c[:12]
	}
	return fmt.Sprintf("%s (commit %s, %s)", version, c, runtime.Version())
}

type versionCommand struct{}

func (c *versionCommand) parseFlags(a *app, args []string) error {
	return a.parseNoArgs(newSettings("version", a.env), args, "jobrelay version", "Prints the version, the commit and the Go version it was built with.")
}

func (c *versionCommand) run(_ context.Context, a *app) error {
	_, err := fmt.Fprintln(a.stdout, "jobrelay", versionString())
	return err
}
