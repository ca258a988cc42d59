package rootfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Change is one entry of a persisted sandbox's changes, as `podman diff` prints them.
type Change struct {
	// Kind is "A" (added), "C" (changed) or "D" (deleted).
	Kind string `json:"kind"`
	Path string `json:"path"`
}

// Diff lists what the sandboxes that used the --persist directory dir changed, sorted by path: every entry of
// each upper layer is added (absent from the lower layer), changed (present there; a directory is changed when
// something in it is) or deleted (a whiteout: a 0:0 character device, or a file with the user.overlay.whiteout
// xattr). The lower layer's children hidden by an opaque directory are deleted too.
func Diff(dir string) ([]Change, error) {
	meta, err := os.ReadFile(path.Join(dir, PersistMeta))
	if err != nil {
		return nil, fmt.Errorf("rootfs: %s is not a --persist directory: %w", dir, err)
	}
	info, err := ParsePersistInfo(meta)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %s: %w", dir, err)
	}
	lower, err := unix.Open(info.Lower, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("rootfs: lower layer %s: %w", info.Lower, err)
	}
	defer unix.Close(lower)
	layers, err := os.ReadDir(path.Join(dir, PersistUpper))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	d := &differ{lower: lower, seen: map[string]bool{}}
	for _, l := range layers {
		mp, err := LayerMountpoint(l.Name())
		if err != nil || !l.IsDir() {
			continue
		}
		if err := d.walk(path.Join(dir, PersistUpper, l.Name()), mp); err != nil {
			return nil, err
		}
	}
	sort.Slice(d.out, func(i, j int) bool { return d.out[i].Path < d.out[j].Path })
	return d.out, nil
}

// WriteChanges prints changes as `caisson diff` does: one "A|C|D PATH" line each, or with asJSON a JSON array of
// {"kind", "path"} objects.
func WriteChanges(w io.Writer, changes []Change, asJSON bool) error {
	if asJSON {
		if changes == nil {
			changes = []Change{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(changes)
	}
	for _, c := range changes {
		if _, err := fmt.Fprintf(w, "%s %s\n", c.Kind, c.Path); err != nil {
			return err
		}
	}
	return nil
}

type differ struct {
	lower int
	out   []Change
	seen  map[string]bool
}

func (d *differ) add(kind, p string) {
	if !d.seen[p] {
		d.seen[p] = true
		d.out = append(d.out, Change{kind, p})
	}
}

// inLower reports whether p exists in the lower layer (resolved inside it, the last component not followed).
func (d *differ) inLower(p string) bool {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(d.lower, strings.TrimLeft(p, "/"), &how)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// walk classifies the entries below upper (the upper directory of the mount at mp).
func (d *differ) walk(upper, mp string) error {
	ents, err := os.ReadDir(upper)
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if isOpaque(upper) {
		d.opaqueDeletes(upper, mp, ents)
	}
	for _, e := range ents {
		full, p := path.Join(upper, e.Name()), path.Join(mp, e.Name())
		if name, ok := strings.CutPrefix(e.Name(), fuseWhiteoutPrefix); ok {
			// fuse-overlayfs's markers; it also leaves a whiteout of ".wh..opq" next to its opaque marker, which
			// hides nothing: a deletion counts only for what the lower layer has.
			if p := path.Join(mp, name); name != "" && e.Name() != fuseOpaque && d.inLower(p) {
				d.add("D", p)
			}
			continue
		}
		var st unix.Stat_t
		if err := unix.Lstat(full, &st); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
		if IsWhiteout(full, &st) {
			if d.inLower(p) {
				d.add("D", p)
			}
			continue
		}
		existed := d.inLower(p)
		if existed {
			d.add("C", p)
		} else {
			d.add("A", p)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := d.walk(full, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// opaqueDeletes reports the lower layer's children of an opaque directory that the upper does not have.
func (d *differ) opaqueDeletes(upper, mp string, ents []os.DirEntry) {
	have := map[string]bool{}
	for _, e := range ents {
		have[strings.TrimPrefix(e.Name(), fuseWhiteoutPrefix)] = true
	}
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	rel := strings.TrimLeft(mp, "/")
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(d.lower, rel, &how)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), mp)
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	for _, n := range names {
		if !have[n] {
			d.add("D", path.Join(mp, n))
		}
	}
}

// IsWhiteout reports whether the upper-layer file p (with its lstat st) marks a deletion: a 0:0 character device,
// or (overlayfs "xwhiteout") an empty regular file with the user.overlay.whiteout xattr.
func IsWhiteout(p string, st *unix.Stat_t) bool {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		return st.Rdev == 0
	case unix.S_IFREG:
		if st.Size != 0 {
			return false
		}
		_, err := unix.Lgetxattr(p, "user.overlay.whiteout", nil)
		return err == nil
	}
	return false
}

// isOpaque reports whether the upper directory p hides the lower directory's contents: user.overlay.opaque "y"
// (the kernel's overlayfs with userxattr), or fuse-overlayfs's user.fuseoverlayfs.opaque "y" or ".wh..wh..opq".
func isOpaque(p string) bool {
	buf := make([]byte, 4)
	for _, name := range []string{"user.overlay.opaque", "user.fuseoverlayfs.opaque"} {
		if n, err := unix.Lgetxattr(p, name, buf); err == nil && n == 1 && buf[0] == 'y' {
			return true
		}
	}
	var st unix.Stat_t
	return unix.Lstat(p+"/"+fuseOpaque, &st) == nil
}

// fuse-overlayfs's file names for whiteouts where it cannot create a 0:0 device: ".wh.NAME" deletes NAME, and
// ".wh..wh..opq" makes its directory opaque.
const (
	fuseWhiteoutPrefix = ".wh."
	fuseOpaque         = ".wh..wh..opq"
)
