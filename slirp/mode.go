package slirp

import (
	"fmt"
	"strings"
)

// Mode selects how the sandbox's network namespace is connected.
type Mode string

const (
	// ModeNone gives the sandbox a network namespace with only a loopback
	// interface. Published ports still work (see the package documentation).
	ModeNone Mode = "none"
	// ModeHost shares the host's network namespace: no helper, no isolation,
	// no published ports.
	ModeHost Mode = "host"
	// ModePasta connects the namespace with pasta (Debian package "passt").
	ModePasta Mode = "pasta"
	// ModeSlirp4netns connects the namespace with slirp4netns.
	ModeSlirp4netns Mode = "slirp4netns"
)

// Modes lists the valid modes in the order they are shown to users.
var Modes = []Mode{ModeNone, ModeHost, ModePasta, ModeSlirp4netns}

// String returns the mode's name.
func (m Mode) String() string { return string(m) }

// valid reports whether m is one of [Modes].
func (m Mode) valid() bool {
	for _, v := range Modes {
		if m == v {
			return true
		}
	}
	return false
}

// helper reports whether m needs a helper process.
func (m Mode) helper() bool { return m == ModePasta || m == ModeSlirp4netns }

// ParseMode parses a network mode name ("none", "host", "pasta",
// "slirp4netns"). Names are case-sensitive; the error names the value and
// lists the valid modes.
func ParseMode(s string) (Mode, error) {
	m := Mode(s)
	if m.valid() {
		return m, nil
	}
	names := make([]string, len(Modes))
	for i, v := range Modes {
		names[i] = string(v)
	}
	return "", fmt.Errorf("slirp: unknown network mode %q (valid: %s)", s, strings.Join(names, ", "))
}
