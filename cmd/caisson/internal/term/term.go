// Package term proxies the caller's terminal to a pseudo-terminal inside a sandbox (for run -t and exec -t): raw
// mode on the caller's side, bytes copied both ways, the window size kept in step.
package term

import (
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Terminal is one proxied terminal session.
type Terminal struct {
	mu      sync.Mutex
	master  *os.File
	saved   *unix.Termios
	outDone chan struct{}
}

// New puts standard input in raw mode (restored by Close).
func New() *Terminal {
	t := &Terminal{outDone: make(chan struct{})}
	if tio, err := unix.IoctlGetTermios(0, unix.TCGETS); err == nil {
		saved := *tio
		t.saved = &saved
		raw := *tio
		raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		raw.Oflag &^= unix.OPOST
		raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		raw.Cflag &^= unix.CSIZE | unix.PARENB
		raw.Cflag |= unix.CS8
		raw.Cc[unix.VMIN] = 1
		raw.Cc[unix.VTIME] = 0
		_ = unix.IoctlSetTermios(0, unix.TCSETS, &raw)
	}
	return t
}

// Attach starts copying between the caller's stdio and the sandbox terminal's master.
func (t *Terminal) Attach(master *os.File) {
	t.mu.Lock()
	t.master = master
	t.mu.Unlock()
	t.Resize()
	go func() { _, _ = io.Copy(master, os.Stdin) }()
	go func() {
		_, _ = io.Copy(os.Stdout, master) // ends with EIO once every holder of the slave is gone
		close(t.outDone)
	}()
}

// Resize copies the caller's window size to the sandbox terminal.
func (t *Terminal) Resize() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.master == nil {
		return
	}
	if ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ); err == nil {
		_ = unix.IoctlSetWinsize(int(t.master.Fd()), unix.TIOCSWINSZ, ws)
	}
}

// Close waits briefly for the last output and restores the caller's terminal mode.
func (t *Terminal) Close() {
	t.mu.Lock()
	attached := t.master != nil
	t.mu.Unlock()
	if attached {
		select {
		case <-t.outDone:
		case <-time.After(500 * time.Millisecond):
		}
	}
	if t.saved != nil {
		_ = unix.IoctlSetTermios(0, unix.TCSETS, t.saved)
	}
}
