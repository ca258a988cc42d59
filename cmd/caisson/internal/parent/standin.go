package parent

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/standin"
	"github.com/caisson-sandbox/caisson/idmap"
	"github.com/caisson-sandbox/caisson/rootfs"
	"golang.org/x/sys/unix"
)

// standInResult is what findStandIns's search delivers.
type standInResult struct {
	ins []rootfs.StandIn
	err error
}

// findStandIns starts the search for the stand-ins of spec's lower tree (package standin) when the sandbox may
// use fuse-overlayfs for it, and returns the channel its result arrives on (nil when there is nothing to find):
// the host view or a --rootfs owned by another user, overlaid, fuse-overlayfs installed and not ruled out. The
// cache lives in $XDG_CACHE_HOME/caisson (~/.cache/caisson). A search of everything is announced on a terminal.
func findStandIns(spec *rootfs.Spec, c Caller, plan *idmap.Plan) <-chan standInResult {
	if !spec.Overlay || spec.FuseOverlayfs == "" || spec.OverlayDriver == rootfs.DriverKernel || c.UID == 0 {
		return nil
	}
	o := standin.Options{Root: "/", UID: c.UID, Owned: plan.SubUIDs}
	if spec.Root != "" {
		var st unix.Stat_t
		if unix.Stat(spec.Root, &st) != nil || o.Owns(st.Uid) {
			return nil // the kernel's overlayfs serves a tree the caller's ids own
		}
		o.Root = spec.Root
	}
	o.Groups = append(o.Groups, uint32(os.Getegid()))
	if gs, err := os.Getgroups(); err == nil {
		for _, g := range gs {
			o.Groups = append(o.Groups, uint32(g))
		}
	}
	if dir, err := os.UserCacheDir(); err == nil {
		o.CacheDir = filepath.Join(dir, "caisson")
	}
	if _, err := unix.IoctlGetTermios(2, unix.TCGETS); err == nil {
		o.Notify = os.Stderr
	}
	ch := make(chan standInResult, 1)
	go func() {
		res, err := standin.Find(o)
		if err == nil && res.CacheErr != nil && res.Searched {
			fmt.Fprintf(os.Stderr, "caisson: warning: --overlay: the list of files you cannot read could not be kept "+
				"(every run will look for them again): %v\n", res.CacheErr)
		}
		ch <- standInResult{res.StandIns, err}
	}()
	return ch
}
