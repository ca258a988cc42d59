package harden

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"golang.org/x/sys/unix"
)

// setRlimits applies the --rlimit values to init's process; the command inherits them through fork. syscall's
// Setrlimit is used so that Go does not restore its own RLIMIT_NOFILE soft limit in the child.
func setRlimits(rls []config.Rlimit) error {
	for _, rl := range rls {
		lim := syscall.Rlimit{Cur: rl.Soft, Max: rl.Hard}
		if err := syscall.Setrlimit(rl.Resource, &lim); err != nil {
			var old syscall.Rlimit
			_ = syscall.Getrlimit(rl.Resource, &old)
			if errors.Is(err, unix.EPERM) {
				return fmt.Errorf("harden: --rlimit %s=%s:%s: the hard limit cannot be raised above your own (%s): %w",
					rl.Name, FormatLimit(rl.Soft), FormatLimit(rl.Hard), FormatLimit(old.Max), err)
			}
			return fmt.Errorf("harden: --rlimit %s: %w", rl.Name, err)
		}
	}
	return nil
}

// FormatLimit prints a limit value, "unlimited" for RLIM_INFINITY.
func FormatLimit(v uint64) string {
	if v == config.RlimInfinity {
		return "unlimited"
	}
	return strconv.FormatUint(v, 10)
}
