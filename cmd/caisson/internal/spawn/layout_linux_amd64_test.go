package spawn

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

func testRequestLayout(t *testing.T) {
	src, err := os.ReadFile("spawn_linux_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	defines := map[string]uintptr{}
	for _, line := range strings.Split(string(src), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "#define" && strings.HasPrefix(f[1], "R_") {
			n, err := strconv.ParseUint(f[2], 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			defines[f[1]] = uintptr(n)
		}
	}
	var r request
	offsets := map[string]uintptr{
		"R_FLAGS": unsafe.Offsetof(r.flags), "R_CLONE3": unsafe.Offsetof(r.clone3), "R_PATH": unsafe.Offsetof(r.path),
		"R_ARGV": unsafe.Offsetof(r.argv), "R_ENVP": unsafe.Offsetof(r.envp), "R_FDS": unsafe.Offsetof(r.fds),
		"R_NFDS": unsafe.Offsetof(r.nfds), "R_CAPS": unsafe.Offsetof(r.caps), "R_NCAPS": unsafe.Offsetof(r.ncaps),
		"R_CAPHDR": unsafe.Offsetof(r.capHdr), "R_CAPDATA": unsafe.Offsetof(r.capData), "R_MASK": unsafe.Offsetof(r.mask),
		"R_ALL": unsafe.Offsetof(r.all), "R_DFL": unsafe.Offsetof(r.dfl), "R_ERRNO": unsafe.Offsetof(r.errno),
		"R_STEP": unsafe.Offsetof(r.step), "R_ROEXEC": unsafe.Offsetof(r.roExec), "R_ROATTR": unsafe.Offsetof(r.roAttr),
		"R_EMPTY": unsafe.Offsetof(r.empty),
	}
	for name, off := range offsets {
		if d, ok := defines[name]; !ok || d != off {
			t.Errorf("request's field of %s is at %d, spawn_linux_amd64.s defines %d (%v)", name, off, d, ok)
		}
	}
	for name := range defines {
		if _, ok := offsets[name]; !ok {
			t.Errorf("spawn_linux_amd64.s defines %s, which this test does not check", name)
		}
	}
	if n := unsafe.Sizeof(cloneArgs{}); n != 88 {
		t.Errorf("cloneArgs is %d bytes, spawn_linux_amd64.s passes 88", n)
	}
}
