package rootfs

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFuseIDMapping(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    []idRange
		want string
	}{
		// auto: 0 is the caller, 1..65536 subordinate ids; the overflow id 65534 is cut out and shown as 0.
		{"auto", []idRange{{0, 1000, 1}, {1, 100000, 65536}}, "65534:0:1:0:0:1:1:1:65533:65535:65535:2"},
		// keep-id with few subordinate ids: the overflow id is outside every range.
		{"keep-id", []idRange{{0, 100000, 1000}, {1000, 1000, 1}}, "65534:0:1:0:0:1000:1000:1000:1"},
		// A range reaching the top is clipped to 32 bits.
		{"huge", []idRange{{0, 0, 1 << 32}}, "65534:0:1:0:0:65534:65535:65535:4294901760"},
	} {
		if got := idMapping(tc.m, 65534); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	if !inside([]idRange{{1, 100000, 65536}}, 65534) || inside([]idRange{{0, 1000, 1}}, 65534) {
		t.Errorf("inside")
	}
}

func TestPersistInfoDriver(t *testing.T) {
	for in, want := range map[string]string{
		`{"version": 1, "lower": "/"}`:                              DriverKernel,
		`{"version": 1, "lower": "/", "overlay": "kernel"}`:         DriverKernel,
		`{"version": 1, "lower": "/", "overlay": "fuse-overlayfs"}`: DriverFuse,
	} {
		pi, err := ParsePersistInfo([]byte(in))
		if err != nil || pi.driver() != want {
			t.Errorf("%s: %q %v, want %q", in, pi.driver(), err, want)
		}
	}
	if _, err := ParsePersistInfo([]byte(`{"version": 1, "lower": "/", "overlay": "zfs"}`)); err == nil {
		t.Errorf("an unknown driver must be refused")
	}
}

func TestFindFuseOverlayfs(t *testing.T) {
	dir := t.TempDir()
	if FindFuseOverlayfs(dir) != "" {
		t.Errorf("found in an empty directory")
	}
	p := filepath.Join(dir, DriverFuse)
	os.WriteFile(p, nil, 0o644)
	if FindFuseOverlayfs("relative:"+dir) != "" {
		t.Errorf("a file that is not executable was taken")
	}
	os.Chmod(p, 0o755)
	if got := FindFuseOverlayfs("relative:" + dir); got != p {
		t.Errorf("got %q, want %q", got, p)
	}
}

// fuse-overlayfs's upper layer: opaque directories by user.fuseoverlayfs.opaque (with its ".wh..wh..opq" file and
// a stray ".wh..opq" whiteout), deletions by 0:0 devices or ".wh.NAME" files.
func TestDiffFuseOverlayfsLayer(t *testing.T) {
	lower := t.TempDir()
	for _, f := range []string{"etc/keep", "etc/gone", "etc/gone2", "opq/old"} {
		os.MkdirAll(filepath.Join(lower, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(lower, f), []byte("x"), 0o644)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, PersistMeta), []byte(`{"version": 1, "lower": "`+lower+`", "overlay": "fuse-overlayfs"}`), 0o600)
	up := filepath.Join(dir, PersistUpper, LayerName("/"))
	os.MkdirAll(filepath.Join(up, "etc"), 0o755)
	os.MkdirAll(filepath.Join(up, "opq"), 0o755)
	os.WriteFile(filepath.Join(up, "etc/.wh.gone"), nil, 0o600)
	if err := unix.Setxattr(filepath.Join(up, "opq"), "user.fuseoverlayfs.opaque", []byte("y"), 0); err != nil {
		t.Skipf("skipping: no user xattrs here: %v", err)
	}
	os.WriteFile(filepath.Join(up, "opq/"+fuseOpaque), nil, 0o700)
	os.WriteFile(filepath.Join(up, "opq/.wh..opq"), nil, 0o700)
	os.WriteFile(filepath.Join(up, "opq/new"), nil, 0o644)
	if err := unix.Mknod(filepath.Join(up, "etc/gone2"), unix.S_IFCHR|0o600, 0); err != nil {
		os.WriteFile(filepath.Join(up, "etc/.wh.gone2"), nil, 0o600) // no mknod here: the file form
	}
	got, err := Diff(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{{"C", "/etc"}, {"D", "/etc/gone"}, {"D", "/etc/gone2"}, {"C", "/opq"}, {"A", "/opq/new"}, {"D", "/opq/old"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: got %v, want %v", i, got[i], want[i])
		}
	}
}
