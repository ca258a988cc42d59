package doctor

import (
	"errors"
	"testing"

	"github.com/caisson-sandbox/caisson/slirp"
)

// The fix doctor prints for a network driver names what is actually wrong: a missing helper, an unusable
// /dev/net/tun, or a helper too old for a flag caisson needs.
func TestNetCheckFix(t *testing.T) {
	fail := errors.New("slirp: cannot work")
	for _, tc := range []struct {
		name string
		f    slirp.Features
		want string
	}{
		{"not installed", slirp.Features{Mode: slirp.ModePasta, Err: fail}, "apt-get install passt"},
		{"not installed", slirp.Features{Mode: slirp.ModeSlirp4netns, Err: fail}, "apt-get install slirp4netns"},
		{"no tun", slirp.Features{Mode: slirp.ModePasta, Path: "/usr/bin/pasta", Missing: []string{"/dev/net/tun"}, Err: fail},
			"see /dev/net/tun above"},
		{"too old", slirp.Features{Mode: slirp.ModeSlirp4netns, Path: "/usr/bin/slirp4netns", Missing: []string{"--disable-host-loopback"}, Err: fail},
			"install a newer slirp4netns"},
		{"works", slirp.Features{Mode: slirp.ModePasta, Path: "/usr/bin/pasta", Version: "2023"}, ""},
	} {
		c := netCheck(tc.f)
		if c.Fix != tc.want || (tc.want == "") != (c.Status == OK) {
			t.Errorf("%s (%s): status %s, fix %q, want %q", tc.name, tc.f.Mode, c.Status, c.Fix, tc.want)
		}
	}
}
