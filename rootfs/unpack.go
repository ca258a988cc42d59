package rootfs

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// ErrEscape is returned for an image layer entry whose name or link target would leave the root.
var ErrEscape = errors.New("entry escapes the root")

// EntryPath cleans the name of a layer entry into a path relative to the root ("" for the root itself). Leading
// "/" and "./" are dropped, as tar does; a ".." component anywhere is refused with ErrEscape (however it would
// resolve), as is a NUL byte.
func EntryPath(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%q: %w", name, ErrEscape)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("%q: %w", name, ErrEscape)
		}
	}
	p := strings.TrimPrefix(path.Clean("/"+name), "/")
	return p, nil
}

// Whiteout classifies a layer entry name: opaque is true for "DIR/.wh..wh..opq" (hide what lower layers put in
// DIR), and target is "DIR/NAME" for "DIR/.wh.NAME" (delete NAME). Both are false/"" for an ordinary entry.
func Whiteout(p string) (target string, opaque bool) {
	dir, base := path.Split(p)
	if base == ".wh..wh..opq" {
		return strings.TrimSuffix(dir, "/"), true
	}
	if name, ok := strings.CutPrefix(base, ".wh."); ok && name != "" {
		return dir + name, false
	}
	return "", false
}
