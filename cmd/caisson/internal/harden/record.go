package harden

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"golang.org/x/sys/unix"
)

// Record is what init applied to the command, as init saw it. Init writes it to RecordFile on a read-only tmpfs;
// `caisson inspect` prints it next to what the kernel reports.
type Record struct {
	Posture string        `json:"posture"`
	Seccomp SeccompRecord `json:"seccomp"`
	// Capabilities are what the command may hold after execve (a root command: its bounding set; a non-root
	// command: its ambient set); Bounding is the bounding set.
	Capabilities      []string        `json:"capabilities"`
	Bounding          []string        `json:"bounding"`
	Landlock          *LandlockRecord `json:"landlock,omitempty"`
	Rlimits           []config.Rlimit `json:"rlimits,omitempty"`
	MaxUserNamespaces string          `json:"max_user_namespaces,omitempty"`
	NetMode           string          `json:"net_mode"`
	// Egress are the destination rules installed for a user-mode network (slirp.EgressRule strings, in order).
	Egress []string `json:"egress,omitempty"`
}

// SeccompRecord names the filter: profile, digest of the program (seccomp.Program.Digest) and length.
type SeccompRecord struct {
	Profile      string `json:"profile"`
	Digest       string `json:"digest,omitempty"`
	Instructions int    `json:"instructions"`
}

// LandlockRecord describes the Landlock domain the command runs in.
type LandlockRecord struct {
	Mode      string   `json:"mode"`       // "on", "best-effort" or "auto" (the strict posture's own)
	KernelABI int      `json:"kernel_abi"` // what the kernel supports (0: none)
	ABI       int      `json:"abi"`        // the ABI level of the rights and scopes enforced (0: not enforced)
	Handled   []string `json:"handled"`    // file-system rights restricted
	Scopes    []string `json:"scopes,omitempty"`
	Writable  []string `json:"writable"`          // paths beneath which writes are allowed
	Stdio     []string `json:"stdio,omitempty"`   // the command's character devices it may reopen, and how
	Missing   []string `json:"missing,omitempty"` // what best-effort could not enforce on this kernel
}

// writeRecord mounts a small tmpfs with RecordFile at RecordDir and makes it read-only before attaching it, so the
// command cannot change it without mount privileges. A root file system without /run gets no record.
func writeRecord(rec Record) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("harden: record: %w", err)
	}
	if err := unix.Mkdir(RecordDir, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EROFS) {
			return nil
		}
		return fmt.Errorf("harden: record: mkdir %s: %w", RecordDir, err)
	}
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("harden: record: fsopen tmpfs: %w", err)
	}
	defer unix.Close(fsfd)
	for k, v := range map[string]string{"source": "caisson", "size": "64k", "mode": "0755"} {
		if err := unix.FsconfigSetString(fsfd, k, v); err != nil {
			return fmt.Errorf("harden: record: tmpfs %s=%s: %w", k, v, err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("harden: record: create tmpfs: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return fmt.Errorf("harden: record: mount tmpfs: %w", err)
	}
	defer unix.Close(mfd)
	fd, err := unix.Openat(mfd, "security.json", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o444)
	if err != nil {
		return fmt.Errorf("harden: record: %w", err)
	}
	_, err = unix.Write(fd, append(data, '\n'))
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("harden: record: write: %w", err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	remount := false
	if err := unix.MountSetattr(mfd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		if !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("harden: record: make read-only: %w", err)
		}
		remount = true // no mount_setattr (nested under caisson's default filter): remount once attached
	}
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, RecordDir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("harden: record: attach at %s: %w", RecordDir, err)
	}
	if remount {
		flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
		if err := unix.Mount("", RecordDir, "", flags, ""); err != nil {
			return fmt.Errorf("harden: record: make read-only: %w", err)
		}
	}
	return nil
}
