package initproc

import (
	"fmt"
	"os"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"golang.org/x/sys/unix"
)

// openPTY opens a new terminal pair on the sandbox's private devpts instance. The slave is opened from the master
// with TIOCGPTPEER, so no path lookup in /dev/pts can be raced (CVE-2025-52565 class).
func openPTY(ws config.WinSize) (master, slave *os.File, err error) {
	mfd, err := unix.Open("/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("init: open terminal: %w", err)
	}
	master = os.NewFile(uintptr(mfd), "ptmx")
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("init: unlock terminal: %w", err)
	}
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		master.Close()
		return nil, nil, fmt.Errorf("init: open terminal peer: %w", errno)
	}
	slave = os.NewFile(sfd, "pts")
	if ws.Rows > 0 && ws.Cols > 0 {
		_ = unix.IoctlSetWinsize(int(sfd), unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Rows, Col: ws.Cols})
	}
	return master, slave, nil
}

// bindConsole makes /dev/console the command's terminal, as bubblewrap and Podman do when the command has one
// (catalogue D10): a bind mount of the terminal itself, cloned from the open slave (no path in /dev/pts is looked
// up), onto a file created in the sandbox's own /dev without following links (CVE-2025-52565 class).
func bindConsole(slave *os.File) error {
	fd, err := unix.Open("/dev/console", unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("init: create /dev/console: %w", err)
	}
	unix.Close(fd)
	tree, err := unix.OpenTree(int(slave.Fd()), "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("init: bind the terminal on /dev/console: %w", err)
	}
	defer unix.Close(tree)
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, "/dev/console", unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("init: bind the terminal on /dev/console: %w", err)
	}
	return nil
}
