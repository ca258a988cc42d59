// Package trim gives back, once a sandbox has run for a while, the memory its caisson processes only needed to start
// it (issue 14): the parent and init each map ~4 MB of the binary's code and tables while the sandbox is set up
// (the kernel maps 64 KB around each page touched), then mostly wait for the command.
//
// Idle unmaps the pages of the binary's read-only segments (code, read-only data, function tables) from this
// process: they stay in the page cache, shared by every process that maps the binary, and the few the waiting
// loop uses fault back in. Writable segments are never touched (MADV_DONTNEED there would discard their contents).
// The heap is left as it is: a garbage collection to return the start-up's garbage (debug.FreeOSMemory) grew the
// runtime's own metadata by as much as it freed (measured: heap -350 KB, GC work buffers and bitmaps +300 KB).
package trim

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Delay is how long a sandbox runs before its processes call Idle: a short-lived sandbox never pays for it.
const Delay = time.Second

// Idle releases the pages of the binary's read-only segments (see the package comment).
func Idle() {
	var exe unix.Stat_t
	if unix.Stat("/proc/self/exe", &exe) != nil {
		return
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	type span struct{ start, end uintptr }
	var ro []span
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || (fields[1] != "r-xp" && fields[1] != "r--p") {
			continue
		}
		ino, err := strconv.ParseUint(fields[4], 10, 64)
		if err != nil || ino != exe.Ino {
			continue
		}
		dev := strings.Split(fields[3], ":")
		if len(dev) != 2 {
			continue
		}
		major, err1 := strconv.ParseUint(dev[0], 16, 32)
		minor, err2 := strconv.ParseUint(dev[1], 16, 32)
		if err1 != nil || err2 != nil || unix.Mkdev(uint32(major), uint32(minor)) != exe.Dev {
			continue
		}
		start, end, ok := strings.Cut(fields[0], "-")
		s, err1 := strconv.ParseUint(start, 16, 64)
		e, err2 := strconv.ParseUint(end, 16, 64)
		if ok && err1 == nil && err2 == nil {
			ro = append(ro, span{uintptr(s), uintptr(e)})
		}
	}
	for _, r := range ro {
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_DONTNEED)
	}
}
