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
