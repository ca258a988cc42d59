package rootfs

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestLayerNameRoundTrip(t *testing.T) {
	for _, mp := range []string{"/", "/home", "/a b/c:d,e\\f", "/x%2Fy", "/mnt/sandboxing/v1"} {
		n := LayerName(mp)
		if back, err := LayerMountpoint(n); err != nil || back != mp {
			t.Errorf("%q -> %q -> %q, %v", mp, n, back, err)
		}
		if filepath.Base(n) != n {
			t.Errorf("%q: layer name %q has a slash", mp, n)
		}
	}
	if _, err := LayerMountpoint("work"); err == nil {
		t.Errorf("a relative name must not be a layer name")
	}
}

func TestEscapeOverlayPath(t *testing.T) {
	for in, want := range map[string]string{
		"/plain": "/plain", "/a:b": `/a\:b`, "/a,b": `/a\,b`, `/a\b`: `/a\\b`, "/a b": "/a b",
	} {
		if got := EscapeOverlayPath(in); got != want {
			t.Errorf("EscapeOverlayPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEntryPathAndWhiteout(t *testing.T) {
	for in, want := range map[string]string{"./etc/x": "etc/x", "/abs/y": "abs/y", "a//b/": "a/b", ".": ""} {
		if got, err := EntryPath(in); err != nil || got != want {
			t.Errorf("EntryPath(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"../x", "a/../../x", "a/..", "x\x00y"} {
		if _, err := EntryPath(bad); !errors.Is(err, ErrEscape) {
			t.Errorf("EntryPath(%q): want ErrEscape, got %v", bad, err)
		}
	}
	if tgt, op := Whiteout("etc/.wh.passwd"); tgt != "etc/passwd" || op {
		t.Errorf("file whiteout: %q %v", tgt, op)
	}
	if tgt, op := Whiteout("opq/.wh..wh..opq"); tgt != "opq" || !op {
		t.Errorf("opaque: %q %v", tgt, op)
	}
	if tgt, op := Whiteout("etc/passwd"); tgt != "" || op {
		t.Errorf("plain: %q %v", tgt, op)
	}
}

func TestOverlayable(t *testing.T) {
	for _, tc := range []struct {
		mp, fs string
		want   bool
	}{{"/home", "ext4", true}, {"/proc", "proc", false}, {"/sys/fs/cgroup", "cgroup2", false},
		{"/run/user/1", "tmpfs", false}, {"/mnt/x", "tmpfs", true}, {"/data", "fuse.sshfs", false}} {
		if got := Overlayable(tc.mp, tc.fs); got != tc.want {
			t.Errorf("Overlayable(%q, %q) = %v", tc.mp, tc.fs, got)
		}
	}
}

// An upper directory built by hand: whiteouts as xattr files (a 0:0 device needs privilege), an opaque directory.
func TestDiffClassification(t *testing.T) {
	lower := t.TempDir()
	for _, f := range []string{"etc/keep", "etc/gone", "opq/old", "changed"} {
		os.MkdirAll(filepath.Join(lower, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(lower, f), []byte("x"), 0o644)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, PersistMeta), []byte(`{"version": 1, "lower": "`+lower+`"}`), 0o600)
	up := filepath.Join(dir, PersistUpper, LayerName("/"))
	os.MkdirAll(filepath.Join(up, "etc"), 0o755)
	os.MkdirAll(filepath.Join(up, "opq"), 0o755)
	os.MkdirAll(filepath.Join(up, "newdir"), 0o755)
	os.WriteFile(filepath.Join(up, "newdir/f"), nil, 0o644)
	os.WriteFile(filepath.Join(up, "changed"), []byte("y"), 0o644)
	os.WriteFile(filepath.Join(up, "etc/gone"), nil, 0o644)
	if err := unix.Setxattr(filepath.Join(up, "etc/gone"), "user.overlay.whiteout", nil, 0); err != nil {
		t.Skipf("skipping: no user xattrs here: %v", err)
	}
	unix.Setxattr(filepath.Join(up, "opq"), "user.overlay.opaque", []byte("y"), 0)
	os.WriteFile(filepath.Join(up, "opq/new"), nil, 0o644)
	got, err := Diff(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{{"C", "/changed"}, {"C", "/etc"}, {"D", "/etc/gone"}, {"A", "/newdir"}, {"A", "/newdir/f"},
		{"C", "/opq"}, {"A", "/opq/new"}, {"D", "/opq/old"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

// Layers applied in order without chown: whiteouts, opaque directories, a symlinked parent resolved in the root.
func TestUnpackerLayers(t *testing.T) {
	dir := t.TempDir()
	u, err := NewUnpacker(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	layer := func(hs ...tar.Header) *bytes.Buffer {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range hs {
			h := h
			if h.Mode == 0 {
				h.Mode = 0o755
			}
			tw.WriteHeader(&h)
		}
		tw.Close()
		return &b
	}
	out := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(u.ApplyLayer(layer(
		tar.Header{Name: "a/", Typeflag: tar.TypeDir}, tar.Header{Name: "a/f", Typeflag: tar.TypeReg},
		tar.Header{Name: "o/old", Typeflag: tar.TypeReg}, tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/a"},
		tar.Header{Name: "out", Typeflag: tar.TypeSymlink, Linkname: out})))
	must(u.ApplyLayer(layer(
		tar.Header{Name: "a/.wh.f", Typeflag: tar.TypeReg}, tar.Header{Name: "o/new", Typeflag: tar.TypeReg},
		tar.Header{Name: "o/.wh..wh..opq", Typeflag: tar.TypeReg}, tar.Header{Name: "link/viaabs", Typeflag: tar.TypeReg})))
	must(u.Finish())
	for p, want := range map[string]bool{"a/f": false, "o/old": false, "o/new": true, "a/viaabs": true} {
		if _, err := os.Lstat(filepath.Join(dir, p)); (err == nil) != want {
			t.Errorf("%s: exists=%v want %v", p, err == nil, want)
		}
	}
	err = u.ApplyLayer(layer(tar.Header{Name: "out/x", Typeflag: tar.TypeReg}))
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("wrote outside the root: %v (%v)", ents, err)
	}
	if err := u.ApplyLayer(layer(tar.Header{Name: "../x", Typeflag: tar.TypeReg})); !errors.Is(err, ErrEscape) {
		t.Errorf("want ErrEscape, got %v", err)
	}
}
