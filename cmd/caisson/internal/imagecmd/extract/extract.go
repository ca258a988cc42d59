// Package extract reads image archives (OCI image layouts as directories or tar files, docker/podman save
// archives) with go-containerregistry and applies their layers into a root file system through rootfs.Unpacker.
// It is linked only into caisson-image, run inside the sandbox of `caisson rootfs unpack`.
package extract

import (
	"fmt"
	"os"

	"github.com/caisson-sandbox/caisson/rootfs"
)

func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "caisson: "+format+"\n", args...)
	return 125
}

// Main extracts ARCHIVE into DIR (the arguments); it runs inside the sandbox that `caisson rootfs unpack` starts.
// On failure DIR is emptied.
func Main(args []string) int {
	if len(args) != 2 {
		return fail("rootfs unpack: want ARCHIVE DIR")
	}
	tmp, err := os.MkdirTemp("", "caisson-unpack")
	if err != nil {
		return fail("rootfs unpack: %v", err)
	}
	defer os.RemoveAll(tmp)
	img, err := openImage(args[0], tmp)
	if err != nil {
		return fail("rootfs unpack: %v", err)
	}
	u, err := rootfs.NewUnpacker(args[1])
	if err != nil {
		return fail("rootfs unpack: %v", err)
	}
	defer u.Close()
	u.Chown = true
	if err := applyImage(img, u); err != nil {
		if cerr := u.Clear(); cerr != nil {
			fmt.Fprintf(os.Stderr, "caisson: warning: rootfs unpack: could not empty the target: %v\n", cerr)
		}
		return fail("rootfs unpack: %v", err)
	}
	if u.Skipped > 0 {
		fmt.Fprintf(os.Stderr, "caisson: warning: rootfs unpack: left out %d device nodes or special entries\n", u.Skipped)
	}
	if u.Unmapped > 0 {
		fmt.Fprintf(os.Stderr, "caisson: warning: rootfs unpack: %d entries kept your own owner (their ids are not in your subordinate range)\n", u.Unmapped)
	}
	return 0
}
