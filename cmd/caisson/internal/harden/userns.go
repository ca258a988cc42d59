package harden

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// maxUserNamespaces is the sysctl, relative to a procfs root.
const maxUserNamespaces = "sys/user/max_user_namespaces"

// pinUserNamespaces sets user.max_user_namespaces to 0 in the sandbox's own user namespace, so that no process in
// it can create a nested user namespace (ENOSPC), whatever its seccomp profile (bubblewrap's --disable-userns
// idea; the limit counts per user in each namespace up the chain, and 0 here needs no extra nesting level). Only a
// process with CAP_SYS_RESOURCE in the sandbox's namespace can raise it again; --security strict leaves the
// command none.
//
// /proc/sys is read-only in the sandbox, so the write goes through a private, detached clone of the /proc mount
// (never attached anywhere the command could see or race), and the file is checked to be on procfs before it is
// written (CVE-2025-52881 class).
func pinUserNamespaces() error {
	tree, err := unix.OpenTree(unix.AT_FDCWD, "/proc", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("harden: user.max_user_namespaces: clone /proc: %w", err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		// Without mount_setattr (nested under caisson's default filter) the clone must be writable already, as
		// the sandbox's own /proc is (only /proc/sys, a mount of its own, is read-only).
		var st unix.Statfs_t
		if !errors.Is(err, unix.ENOSYS) || unix.Fstatfs(tree, &st) != nil || st.Flags&unix.ST_RDONLY != 0 {
			return fmt.Errorf("harden: user.max_user_namespaces: make the private /proc clone writable: %w", err)
		}
	}
	how := unix.OpenHow{
		Flags:   unix.O_RDWR | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	fd, err := unix.Openat2(tree, maxUserNamespaces, &how)
	if err != nil {
		return fmt.Errorf("harden: user.max_user_namespaces: open: %w", err)
	}
	defer unix.Close(fd)
	if err := checkProcFD(fd, maxUserNamespaces); err != nil {
		return err
	}
	if _, err := unix.Write(fd, []byte("0\n")); err != nil {
		return fmt.Errorf("harden: set user.max_user_namespaces=0: %w", err)
	}
	buf := make([]byte, 32)
	n, err := unix.Pread(fd, buf, 0)
	if err != nil || strings.TrimSpace(string(buf[:n])) != "0" {
		return fmt.Errorf("harden: user.max_user_namespaces reads %q after writing 0: %v", strings.TrimSpace(string(buf[:max(n, 0)])), err)
	}
	return nil
}

// checkProcFD verifies that fd is a file on procfs.
func checkProcFD(fd int, name string) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return fmt.Errorf("harden: statfs %s: %w", name, err)
	}
	if st.Type != unix.PROC_SUPER_MAGIC {
		return fmt.Errorf("harden: %s is not on procfs (type %#x)", name, st.Type)
	}
	return nil
}
