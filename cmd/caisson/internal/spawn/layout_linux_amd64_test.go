package spawn

import "testing"

func testRequestLayout(t *testing.T) {
	// The #defines of spawn_linux_amd64.s.
	for name, c := range map[string][2]uintptr{
		"flags": {offFlags, 0}, "clone3": {offClone3, 8}, "path": {offPath, 16}, "argv": {offArgv, 24},
		"envp": {offEnvp, 32}, "fds": {offFds, 40}, "nfds": {offNfds, 48}, "caps": {offCaps, 56},
		"ncaps": {offNcaps, 64}, "capHdr": {offCapHdr, 72}, "capData": {offCapData, 80}, "mask": {offMask, 88},
		"all": {offAll, 96}, "dfl": {offDfl, 104}, "errno": {offErrno, 136}, "step": {offStep, 144},
		"roExec": {offRoExec, 152}, "roAttr": {offRoAttr, 160}, "empty": {offEmpty, 192},
	} {
		if c[0] != c[1] {
			t.Errorf("request.%s is at %d, spawn_linux_amd64.s reads %d", name, c[0], c[1])
		}
	}
	if n := unsafeSizeofCloneArgs(); n != 88 {
		t.Errorf("cloneArgs is %d bytes, spawn_linux_amd64.s passes 88", n)
	}
}
