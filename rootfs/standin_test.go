package rootfs

import "testing"

// Init accepts only stand-ins of a known kind, with a clean absolute path below the root and permission bits.
func TestCheckStandIn(t *testing.T) {
	for _, s := range []StandIn{
		{Path: "/etc/shadow", Kind: StandInFile, Mode: 0o640},
		{Path: "/var/lib/apt/lists/partial", Kind: StandInDir, Mode: 0o700},
		{Path: "/etc", Kind: StandInParent, Mode: 0o755},
		{Path: "/tmp/sticky", Kind: StandInDir, Mode: 0o1777},
	} {
		if err := CheckStandIn(s); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
	for _, s := range []StandIn{
		{Path: "/", Kind: StandInDir},
		{Path: "etc/shadow", Kind: StandInFile},
		{Path: "/etc/../shadow", Kind: StandInFile},
		{Path: "/etc//shadow", Kind: StandInFile},
		{Path: "/etc/shadow/", Kind: StandInFile},
		{Path: "/etc/sha\x00dow", Kind: StandInFile},
		{Path: "/etc/shadow", Kind: "symlink"},
		{Path: "/etc/shadow", Kind: StandInFile, Mode: 0o100640},
	} {
		if err := CheckStandIn(s); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
}
