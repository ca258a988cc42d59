package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BusyboxRootfs fills dir with a minimal root file system made offline from the host's static busybox
// (busybox-static): /bin/busybox, a link for each applet in /bin, and the directories a container's mounts need.
// Images for the engine tests are made from it too.
func BusyboxRootfs(t testing.TB, dir string) {
	t.Helper()
	bb := ""
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			bb = p
			break
		}
	}
	if bb == "" {
		SkipOrFail(t, "no static busybox (apt-get install busybox-static)")
		return
	}
	out, err := exec.Command("file", "-L", bb).Output()
	if err == nil && !strings.Contains(string(out), "statically linked") && !strings.Contains(string(out), "static-pie") {
		SkipOrFail(t, "%s is not statically linked (apt-get install busybox-static)", bb)
		return
	}
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "etc", "root", "run", "var/tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":  "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
