package standin

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/idmap"
	"github.com/caisson-sandbox/caisson/rootfs"
	"golang.org/x/sys/unix"
)

// tree builds a root in a temporary directory. The tests search it as a caller who owns nothing there (another
// uid, no group): only the "other" permission bits count, and access(2) is replaced by otherAccess, so they run
// the same for root and for any user.
func tree(t *testing.T) (root string, o Options) {
	t.Helper()
	root = t.TempDir()
	mk := func(p string, mode os.FileMode, dir bool) {
		t.Helper()
		full := filepath.Join(root, p)
		if dir {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(full, []byte("secret"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, mode); err != nil {
			t.Fatal(err)
		}
	}
	mk("etc", 0o755, true)
	mk("etc/passwd", 0o644, false)
	mk("etc/shadow", 0o640, false)
	mk("var/lib/apt/lists", 0o755, true)
	mk("var/lib/apt/lists/lock", 0o640, false)
	mk("var/lib/apt/lists/partial", 0o700, true)
	mk("srv/dropbox", 0o711, true)
	mk("usr/bin", 0o755, true)
	mk("usr/bin/tool", 0o755, false)
	os.Symlink("/etc/shadow", filepath.Join(root, "usr/bin/link"))
	for _, d := range []string{"proc", "tmp"} {
		mk(d, 0o755, true)
		mk(d+"/hidden", 0o600, false) // covered by the sandbox: never searched
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(root, "var/lib/apt/lists/partial"), 0o755) })
	o = Options{Root: root, UID: 4000000, Groups: []uint32{4000000}, CacheDir: t.TempDir(), access: otherAccess}
	return root, o
}

// otherAccess is access(2) for a user of the "other" class on a file system without ACLs.
func otherAccess(dirfd int, name string, mode uint32) bool {
	var st unix.Stat_t
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	return st.Mode&mode == mode // R_OK and X_OK are the "other" bits 04 and 01
}

// kinds renders stand-ins as "path kind mode" lines.
func kinds(ins []rootfs.StandIn) string {
	var b strings.Builder
	for _, s := range ins {
		b.WriteString(s.Path + " " + s.Kind + " " + strings.TrimPrefix(os.FileMode(s.Mode).String(), "-") + "\n")
	}
	return b.String()
}

func find(t *testing.T, o Options) Result {
	t.Helper()
	res, err := Find(o)
	if err != nil {
		t.Fatal(err)
	}
	if res.CacheErr != nil {
		t.Fatal(res.CacheErr)
	}
	for _, s := range res.StandIns {
		if err := rootfs.CheckStandIn(s); err != nil {
			t.Errorf("invalid stand-in: %v", err)
		}
	}
	return res
}

const wantTree = `/etc parent rwxr-xr-x
/etc/shadow file rw-r-----
/srv parent rwxr-xr-x
/srv/dropbox dir rwx--x--x
/var parent rwxr-xr-x
/var/lib parent rwxr-xr-x
/var/lib/apt parent rwxr-xr-x
/var/lib/apt/lists parent rwxr-xr-x
/var/lib/apt/lists/lock file rw-r-----
/var/lib/apt/lists/partial dir rwx------
`

func TestFindAndCache(t *testing.T) {
	root, o := tree(t)
	res := find(t, o)
	if !res.Searched || kinds(res.StandIns) != wantTree {
		t.Fatalf("first search (searched %v):\n%s\nwant:\n%s", res.Searched, kinds(res.StandIns), wantTree)
	}
	var st os.FileInfo
	st, _ = os.Stat(filepath.Join(root, "etc/shadow"))
	for _, s := range res.StandIns {
		if s.Path == "/etc/shadow" && (s.Mtime != st.ModTime().UnixNano() || s.UID != uint32(os.Getuid())) {
			t.Errorf("attributes of /etc/shadow: %+v", s)
		}
	}
	// The second run reads the cache.
	res = find(t, o)
	if res.Searched || kinds(res.StandIns) != wantTree {
		t.Fatalf("from the cache (searched %v):\n%s", res.Searched, kinds(res.StandIns))
	}
	// Other groups: another search.
	o2 := o
	o2.Groups = []uint32{4000000, 4000001}
	if res = find(t, o2); !res.Searched {
		t.Errorf("a cache made for other groups was used")
	}
}

// What changed on the host since the cache was made is seen: an entry readable now or gone is dropped, a new one
// in a watched directory is found, a directory born since is searched whole, a parent swapped for a symlink
// drops what was below it.
func TestFindChanges(t *testing.T) {
	root, o := tree(t)
	find(t, o)
	time.Sleep(20 * time.Millisecond)
	os.Chmod(filepath.Join(root, "etc/shadow"), 0o644)
	os.Remove(filepath.Join(root, "var/lib/apt/lists/lock"))
	os.WriteFile(filepath.Join(root, "etc/gshadow"), nil, 0o600)
	os.MkdirAll(filepath.Join(root, "opt/new/deep"), 0o755)
	os.WriteFile(filepath.Join(root, "opt/new/deep/key"), nil, 0o600)
	res := find(t, o)
	got := kinds(res.StandIns)
	if res.Searched {
		t.Errorf("searched everything again")
	}
	for _, want := range []string{"/etc/gshadow file", "/opt/new/deep/key file", "/var/lib/apt/lists/partial dir"} {
		if !strings.Contains(got, want) {
			t.Errorf("lacks %q:\n%s", want, got)
		}
	}
	for _, gone := range []string{"/etc/shadow ", "/var/lib/apt/lists/lock "} {
		if strings.Contains(got, gone) {
			t.Errorf("still lists %q:\n%s", gone, got)
		}
	}
	// /srv replaced by a symlink to a tree with the same names: nothing is reached through it.
	os.Chmod(filepath.Join(root, "srv/dropbox"), 0o755)
	os.RemoveAll(filepath.Join(root, "srv"))
	other := t.TempDir()
	os.Mkdir(filepath.Join(other, "dropbox"), 0o711)
	os.Symlink(other, filepath.Join(root, "srv"))
	if got := kinds(find(t, o).StandIns); strings.Contains(got, "/srv") {
		t.Errorf("a stand-in through a symlink:\n%s", got)
	}
}

// Directories the caller's ids own are not searched, and their entries are never stand-ins.
func TestFindOwned(t *testing.T) {
	_, o := tree(t)
	o.Owned = []idmap.Range{{Start: uint32(os.Getuid()), Count: 1}}
	if res := find(t, o); len(res.StandIns) != 0 {
		t.Errorf("stand-ins in the caller's own tree:\n%s", kinds(res.StandIns))
	}
}

// A cache that names a path outside the root, or an unknown kind, is not used.
func TestFindBadCache(t *testing.T) {
	_, o := tree(t)
	res := find(t, o)
	for _, bad := range []map[string]string{{"../etc/shadow": rootfs.StandInFile}, {"etc/x": "socket"}, {"etc": rootfs.StandInParent}} {
		c := cacheFile{Version: cacheVersion, Key: o.key(), Entries: bad, Watch: map[string]stamp{}}
		b, _ := json.Marshal(c)
		if err := os.WriteFile(res.Cache, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if r := find(t, o); !r.Searched || kinds(r.StandIns) != wantTree {
			t.Errorf("cache %v: searched %v:\n%s", bad, r.Searched, kinds(r.StandIns))
		}
	}
}

// An ACL may grant what the mode bits deny: access(2) decides then, during a search and a check.
func TestFindACL(t *testing.T) {
	root, o := tree(t)
	shadow := filepath.Join(root, "etc/shadow")
	o.access = func(dirfd int, name string, mode uint32) bool {
		if p, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(dirfd)); filepath.Join(p, name) == shadow {
			return true // an ACL entry grants the caller /etc/shadow
		}
		return otherAccess(dirfd, name, mode)
	}
	for i := 0; i < 2; i++ {
		if got := kinds(find(t, o).StandIns); strings.Contains(got, "/etc/shadow") {
			t.Errorf("run %d: a file an ACL lets the caller read is a stand-in:\n%s", i, got)
		}
	}
}

// A listed directory that became readable is searched as a search does: access(2) decides where the mode bits
// deny, so a file an ACL grants in it is no stand-in.
func TestFindACLBelowReadable(t *testing.T) {
	root, o := tree(t)
	granted := filepath.Join(root, "var/lib/apt/lists/partial/granted")
	if err := os.WriteFile(granted, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	o.access = func(dirfd int, name string, mode uint32) bool {
		if p, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(dirfd)); filepath.Join(p, name) == granted {
			return true // an ACL entry grants the caller the file
		}
		return otherAccess(dirfd, name, mode)
	}
	if got := kinds(find(t, o).StandIns); !strings.Contains(got, "/var/lib/apt/lists/partial dir") {
		t.Fatalf("first search:\n%s", got)
	}
	os.Chmod(filepath.Dir(granted), 0o755)
	if got := kinds(find(t, o).StandIns); strings.Contains(got, "/partial") {
		t.Errorf("a file an ACL lets the caller read, in a directory that became readable, is a stand-in:\n%s", got)
	}
}
