//go:build linux

package seccomp

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// setFilter loads filter with seccomp(SECCOMP_SET_MODE_FILTER, flags, &fprog)
// on the calling thread. On kernels without the seccomp syscall (before 3.17)
// it falls back to prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog), which
// behaves like flags == 0.
func setFilter(filter []unix.SockFilter, flags uintptr) error {
	fprog := unix.SockFprog{
		Len:    uint16(len(filter)),
		Filter: &filter[0],
	}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	if errno == unix.ENOSYS && flags == 0 {
		_, _, errno = unix.RawSyscall(unix.SYS_PRCTL, unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)))
	}
	// The kernel has copied the program by now; keep Go from freeing it before.
	runtime.KeepAlive(filter)
	runtime.KeepAlive(&fprog)
	if errno != 0 {
		return errno
	}
	return nil
}

// probeFilterSupport asks the kernel whether it supports seccomp filters
// without installing one: SECCOMP_SET_MODE_FILTER with a NULL program fails
// with EFAULT when filters are supported and EINVAL when they are not
// (CONFIG_SECCOMP_FILTER unset); ENOSYS means no seccomp syscall at all.
func probeFilterSupport() error {
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, 0)
	if errno == unix.EFAULT {
		return nil
	}
	if errno == 0 {
		return unix.EINVAL // cannot happen
	}
	return errno
}
