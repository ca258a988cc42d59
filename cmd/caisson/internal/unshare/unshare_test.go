package unshare

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caisson-sandbox/caisson/idmap"
)

func TestRefuse(t *testing.T) {
	homes := []string{"/home/u", "/data/users/u"}
	for _, tc := range []struct {
		path string
		want string // "" = allowed
	}{
		{"/", "refusing to remove /"},
		{"/home/u", "your home directory"},
		{"/home", "holds your home directory /home/u"},
		{"/data", "holds your home directory /data/users/u"},
		{"/data/users/u", "your home directory"},
		{"/home/u/p1", ""},
		{"/home/u2", ""},        // a sibling whose name starts like the home directory
		{"/home/u/u1/home", ""}, // an image's /home inside it
		{"/tmp/x", ""},
	} {
		err := refuse(tc.path, homes)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.path, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: want an error naming %q, got %v", tc.path, tc.want, err)
		}
	}
	if err := refuse("/x", []string{""}); err != nil {
		t.Errorf("an unknown home directory refuses nothing: %v", err)
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	os.MkdirAll(filepath.Join(real, "p1"), 0o755)
	os.Symlink(real, filepath.Join(dir, "link"))
	os.Symlink(filepath.Join(real, "p1"), filepath.Join(real, "last"))
	for arg, want := range map[string]string{
		filepath.Join(dir, "link", "p1"):       filepath.Join(real, "p1"), // a symlink above is resolved
		filepath.Join(dir, "link", "p1") + "/": filepath.Join(real, "p1"),
		filepath.Join(dir, "link", "last"):     filepath.Join(real, "last"), // the last element is kept
		"/":                                    "/",
		"///":                                  "/",
	} {
		got, err := resolve(arg)
		if err != nil || got != want {
			t.Errorf("resolve(%q) = %q, %v; want %q", arg, got, err, want)
		}
	}
	for _, arg := range []string{"", ".", "..", "a/.", "a/..", "../", filepath.Join(dir, "missing", "x")} {
		if got, err := resolve(arg); err == nil {
			t.Errorf("resolve(%q) = %q, want an error", arg, got)
		}
	}
}

func TestOutermost(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"/a", "/a/b", "/c"}, []string{"/a", "/c"}},
		{[]string{"/a/b", "/a"}, []string{"/a"}},
		{[]string{"/a", "/a"}, []string{"/a"}},
		{[]string{"/a", "/ab"}, []string{"/a", "/ab"}},
		{[]string{"/x/y/z", "/x/y", "/x/yy"}, []string{"/x/y", "/x/yy"}},
	} {
		if got := outermost(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("outermost(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestOwnedByCaller(t *testing.T) {
	maps := []idmap.Mapping{{Inside: 0, Outside: 1000, Count: 1}, {Inside: 1, Outside: 100000, Count: 65536}}
	for uid, want := range map[uint32]bool{1000: true, 100000: true, 165535: true, 165536: false, 99999: false, 0: false, 1001: false} {
		if got := ownedByCaller(uid, 1000, maps); got != want {
			t.Errorf("uid %d: %v, want %v", uid, got, want)
		}
	}
	if !ownedByCaller(1000, 1000, nil) || ownedByCaller(100000, 1000, nil) {
		t.Errorf("without maps only the caller's own uid is the caller's")
	}
}

func TestPasswdShell(t *testing.T) {
	passwd := "root:x:0:0:root:/root:/bin/bash\n# comment\nbroken line\nu:x:1000:1000:U,,,:/home/u:/usr/bin/zsh\nn:x:1001:1001::/home/n:\n"
	for uid, want := range map[int]string{0: "/bin/bash", 1000: "/usr/bin/zsh", 1001: "", 4242: ""} {
		if got := passwdShell(strings.NewReader(passwd), uid); got != want {
			t.Errorf("uid %d: %q, want %q", uid, got, want)
		}
	}
	if got := loginShell("/bin/fish", 0); got != "/bin/fish" {
		t.Errorf("$SHELL wins: %q", got)
	}
}

func TestCheckMapMode(t *testing.T) {
	for _, m := range []string{"auto", "single", "keep-id"} {
		if err := checkMapMode(m); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
	for _, m := range []string{"", "Auto", "keepid", "full"} {
		if err := checkMapMode(m); err == nil || !strings.Contains(err.Error(), "--map") {
			t.Errorf("%q: want an error naming --map, got %v", m, err)
		}
	}
}
