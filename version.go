package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// version prints the module version and the VCS revision the binary was
// built from, as the Go toolchain recorded them.
func version(w io.Writer) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintln(w, "fanout (no build information)")
		return
	}
	fmt.Fprintln(w, formatVersion(info))
}

// formatVersion formats info as "fanout VERSION [revision REV [(modified)]
// [of TIME]] GOVERSION". go install …@version records the module version;
// go build in a git clone (with VCS stamping, the default) the revision.
func formatVersion(info *debug.BuildInfo) string {
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	rev, modified, at := "", false, ""
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		case "vcs.time":
			at = s.Value
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "fanout %s", v)
	if rev != "" {
		fmt.Fprintf(&b, " revision %s", rev)
		if modified {
			b.WriteString(" (modified)")
		}
		if at != "" {
			fmt.Fprintf(&b, " of %s", at)
		}
	}
	fmt.Fprintf(&b, " %s", info.GoVersion)
	return b.String()
}
