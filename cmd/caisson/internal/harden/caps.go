package harden

import (
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"golang.org/x/sys/unix"
)

// CapSet is a set of capabilities, bit N for capability N.
type CapSet uint64

// Has reports whether c is in s.
func (s CapSet) Has(c int) bool { return c >= 0 && c < 64 && s&(1<<uint(c)) != 0 }

// LastCap returns the highest capability number the running kernel knows (/proc/sys/kernel/cap_last_cap), or the
// highest this build knows when the file cannot be read.
func LastCap() int {
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= 0 && n < 64 {
			return n
		}
	}
	return len(config.CapNames) - 1
}

// all returns every capability up to last.
func all(last int) CapSet { return CapSet(1<<uint(last+1) - 1) }

// capSysPtrace is CAP_SYS_PTRACE, left out of the default posture.
const capSysPtrace = 19

// CommandCaps returns the capabilities the command may hold: in the default posture every capability but
// CAP_SYS_PTRACE, none in strict; then --cap-add and --cap-drop in that order ("ALL" adds or removes everything).
// Capabilities above last (unknown to the running kernel) are an error when named explicitly.
//
// CAP_SYS_PTRACE is what would let root inside past init's non-dumpable flag: init is created in the sandbox's
// user namespace, so that capability there lets the command attach to init, read and write its memory, and take
// its descriptors (pidfd_getfd, /proc/1/fd), among them init's channel to caisson outside. Without it, the
// command still traces its own processes (same uid, dumpable), as under Docker's and Podman's defaults.
func CommandCaps(sec config.Security, last int) (CapSet, error) {
	var s CapSet
	if sec.Posture != config.PostureStrict {
		s = all(last) &^ (1 << capSysPtrace)
	}
	for _, name := range sec.CapAdd {
		c, err := capNumber(name, last)
		if err != nil {
			return 0, fmt.Errorf("harden: --cap-add: %w", err)
		}
		if c < 0 {
			s = all(last)
		} else {
			s |= 1 << uint(c)
		}
	}
	for _, name := range sec.CapDrop {
		c, err := capNumber(name, last)
		if err != nil {
			return 0, fmt.Errorf("harden: --cap-drop: %w", err)
		}
		if c < 0 {
			s = 0
		} else {
			s &^= 1 << uint(c)
		}
	}
	return s, nil
}

// AddedCaps returns the capabilities --cap-add names explicitly and --cap-drop does not take back: the ambient
// capabilities of a command that does not run as root.
func AddedCaps(sec config.Security, last int) (CapSet, error) {
	added := config.Security{Posture: config.PostureStrict, CapAdd: sec.CapAdd, CapDrop: sec.CapDrop}
	return CommandCaps(added, last)
}

func capNumber(name string, last int) (int, error) {
	_, c, err := config.ParseCap(name)
	if err != nil {
		return 0, err
	}
	if c > last {
		return 0, fmt.Errorf("%s is unknown to the running kernel (its last capability is %d)", name, last)
	}
	return c, nil
}

// CapList returns the canonical names of the capabilities in s, in number order; unknown bits are "cap_N".
func CapList(s CapSet) []string {
	out := []string{}
	for v := uint64(s); v != 0; v &= v - 1 {
		c := bits.TrailingZeros64(v)
		if c < len(config.CapNames) {
			out = append(out, config.CapNames[c])
		} else {
			out = append(out, "cap_"+strconv.Itoa(c))
		}
	}
	return out
}

// ParseCapMask parses a hexadecimal capability mask as /proc/PID/status prints it (CapEff: 000001ffffffffff).
func ParseCapMask(hex string) (CapSet, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid capability mask %q", hex)
	}
	return CapSet(n), nil
}

// applyCaps shrinks the calling thread's bounding set to keep and clears its ambient set, so that a root command
// forked from it gets at most keep (its permitted set comes from the bounding set at execve); a non-root command
// (keep-id) gets ambient, which must be within keep, through attr (Go's fork raises them after setuid).
func applyCaps(keep, ambient CapSet, last int, attr *syscall.SysProcAttr) error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("harden: clear ambient capabilities: %w", err)
	}
	for c := 0; c <= last; c++ {
		if keep.Has(c) {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("harden: drop %s from the bounding set: %w", capName(c), err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("harden: capget: %w", err)
	}
	// Inheritable: what a non-root command keeps as ambient; nothing for root (its set comes from the bounding set).
	// Effective and permitted stay: they are init's own and do not pass execve.
	inh := ambient & keep
	for c := 0; c <= last; c++ {
		if inh.Has(c) {
			attr.AmbientCaps = append(attr.AmbientCaps, uintptr(c))
		}
	}
	data[0].Inheritable, data[1].Inheritable = uint32(inh), uint32(inh>>32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("harden: capset: %w", err)
	}
	return nil
}

func capName(c int) string {
	if c < len(config.CapNames) {
		return config.CapNames[c]
	}
	return "cap_" + strconv.Itoa(c)
}
