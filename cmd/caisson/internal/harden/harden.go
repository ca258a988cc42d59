// Package harden applies a sandbox's hardening (config.Security) to the command, and reports what is in force
// (`caisson inspect`).
//
// Apply runs in init, on the locked main thread, right before that thread forks the command. Everything it sets is
// either per thread and inherited through fork and execve (the capability bounding, inheritable and ambient sets,
// no_new_privs, the Landlock domain, the seccomp filter) or per process and inherited (resource limits, the
// user-namespace limit of the sandbox's user namespace). The order is fixed:
//
//  1. strict: user.max_user_namespaces = 0 in the sandbox's user namespace, written through a private procfs
//     instance verified with fstatfs, so nested user namespaces fail with ENOSPC whatever the seccomp profile;
//  2. the record of what is applied, on a read-only tmpfs at /run/caisson (read by `caisson inspect`);
//  3. init becomes non-dumpable, so the command cannot open /proc/1/{exe,fd,root,mem} without CAP_SYS_PTRACE;
//  4. capabilities: the bounding set, inheritable and ambient sets shrink to what the command may have;
//  5. no_new_privs, then Landlock (landlock_restrict_self on this thread only: no psx, init's other threads stay
//     free and the main thread only reaps and forwards signals afterwards);
//  6. resource limits (setrlimit on init, inherited by the command), after every step that opens files or maps
//     memory; with an address-space limit init first maps the heap it will need (see reserveHeap);
//  7. the seccomp filter, last (seccomp.Install, no TSYNC).
//
// Init's main thread keeps its own effective and permitted capabilities: they do not pass execve (the command gets
// only what the bounding, inheritable and ambient sets allow), and init still needs CAP_KILL to forward signals to
// a command running under another uid.
package harden

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/outer"
	"github.com/caisson-sandbox/caisson/seccomp"
	"golang.org/x/sys/unix"
)

// RecordDir is where init mounts the read-only record of the sandbox's hardening.
const RecordDir = "/run/caisson"

// RecordFile is the record's path inside the sandbox.
const RecordFile = RecordDir + "/security.json"

// Apply hardens the calling thread (and, for resource limits, init's process) for the command forked next from it,
// and adjusts attr where the command's credentials need it (ambient capabilities of a non-root command). stdio are
// the descriptors the command gets as 0, 1 and 2 (Landlock lets it reopen those that are character devices).
//
// Preconditions: init's main goroutine, locked to the main thread, after the root file system is set up and right
// before that thread starts the command. It must be the last call before the fork: afterwards the thread cannot
// mount, and in strict mode cannot create namespaces.
func Apply(cfg *config.Sandbox, attr *syscall.SysProcAttr, stdio []uintptr) error {
	sec := cfg.Security
	if sec.Posture == "" {
		sec.Posture = config.PostureDefault
	}
	if sec.Seccomp == "" {
		sec.Seccomp = sec.Posture
	}
	if unix.Gettid() != unix.Getpid() {
		return fmt.Errorf("harden: not on init's main thread")
	}
	rec := Record{Posture: sec.Posture, NetMode: cfg.Extra.NetMode}
	for _, e := range cfg.Extra.Guest.Egress {
		rec.Egress = append(rec.Egress, e.String())
	}

	prog, err := compileSeccomp(sec)
	if err != nil {
		return err
	}
	rec.Seccomp = SeccompRecord{Profile: sec.Seccomp, Digest: prog.Digest, Instructions: prog.Len()}
	if sec.Seccomp != string(seccomp.Unconfined) {
		if err := seccomp.Supported(); err != nil {
			if err := stackRefused(cfg, sec, err); err != nil {
				return err
			}
			prog = nil
			rec.Seccomp = SeccompRecord{Profile: sec.Seccomp + " (not installed: the outer sandbox refuses seccomp(2))"}
		}
	}

	rec.Rlimits = append(rec.Rlimits, sec.Rlimits...)

	strict := sec.Posture == config.PostureStrict
	if strict {
		if err := pinUserNamespaces(); err != nil {
			if o := cfg.Extra.Outer; cfg.Extra.OuterProc || (o.In() && errors.Is(err, unix.EINVAL)) {
				// An outer /proc (the fallback, or --share pid) has the outer sandbox's masks, locked: the kernel
				// refuses to clone it without them (EINVAL), so the limit cannot be written.
				return &outer.RefusedError{Flag: "--security strict", Need: outer.NeedProc, Err: err, In: o}
			}
			return err
		}
		rec.MaxUserNamespaces = "0"
	}

	last := LastCap()
	capset, err := CommandCaps(sec, last)
	if err != nil {
		return err
	}
	var ambient CapSet
	if cfg.UID != 0 {
		if ambient, err = AddedCaps(sec, last); err != nil {
			return err
		}
		ambient &= capset
	}
	rec.Bounding = CapList(capset)
	if cfg.UID != 0 {
		rec.Capabilities = CapList(ambient)
	} else {
		rec.Capabilities = rec.Bounding
	}

	var ll *landlockPlan
	if sec.Landlock != config.LandlockOff {
		if ll, err = planLandlock(sec, cfg.Workdir, stdio); err != nil {
			if o := cfg.Extra.Outer; o.In() && o.SeccompFilters > 0 && errors.Is(err, unix.ENOSYS) {
				// The kernel may have Landlock and the outer filter refuse its calls (ENOSYS either way).
				return fmt.Errorf("%w; or %s; fix: %s", err, o.Why(outer.NeedLandlock), o.Fix(outer.NeedLandlock))
			}
			return err
		}
		defer ll.close()
		rec.Landlock = ll.record
		for _, w := range ll.warnings {
			fmt.Fprintf(os.Stderr, "caisson: warning: %s\n", w)
		}
	}

	if err := writeRecord(rec); err != nil {
		return err
	}
	// The command must not reach init's image, fds or memory through /proc/1 (CVE-2019-5736, CVE-2024-21626
	// class); execve resets the flag for the command itself.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("harden: make init non-dumpable: %w", err)
	}
	if err := applyCaps(capset, ambient, last, attr); err != nil {
		return err
	}
	if strict || ll != nil {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("harden: prctl(PR_SET_NO_NEW_PRIVS): %w", err)
		}
	}
	if ll != nil && ll.fd >= 0 {
		if err := ll.restrict(); err != nil {
			return err
		}
	}
	// Resource limits come after every step that opens files or maps memory, so a low nofile or as limit binds
	// the command without starving init's own setup.
	if HasLimit(sec.Rlimits, unix.RLIMIT_NPROC) || HasLimit(sec.Rlimits, unix.RLIMIT_AS) || cfg.Extra.PidsLimited {
		ReserveThreads(threadReserve)
	}
	if HasLimit(sec.Rlimits, unix.RLIMIT_AS) {
		reserveHeap()
	}
	if err := setRlimits(sec.Rlimits); err != nil {
		return err
	}
	if err := seccomp.Install(prog); err != nil {
		return fmt.Errorf("harden: %w", err)
	}
	return nil
}

// stackRefused decides what to do when the kernel refuses caisson's own seccomp filter on top of the outer
// sandbox's (a filter that refuses seccomp(2), a profile that answers ENOSYS for it): the default posture's
// filter, not asked for, is skipped with a notice (the command still runs under the outer filter) and it returns
// nil; an asked-for profile (--seccomp, --security strict) is an error naming the outer restriction.
func stackRefused(cfg *config.Sandbox, sec config.Security, cause error) error {
	o := cfg.Extra.Outer
	if !outer.Refused(cause) {
		return fmt.Errorf("harden: --seccomp %s: %w", sec.Seccomp, cause)
	}
	if cfg.Asked.Seccomp {
		flag := "--seccomp " + sec.Seccomp
		if sec.Seccomp == sec.Posture {
			flag = "--security " + sec.Posture
		}
		return &outer.RefusedError{Flag: flag, Need: outer.NeedSeccomp, Err: outer.Errno(cause), In: o}
	}
	fmt.Fprintln(os.Stderr, o.Notice(outer.NeedSeccomp,
		"the command runs without caisson's seccomp filter, under the outer one only", "--seccomp unconfined skips it without this notice"))
	return nil
}

// compileSeccomp compiles the profile sec asks for.
func compileSeccomp(sec config.Security) (*seccomp.Program, error) {
	var prog *seccomp.Program
	var err error
	if len(sec.SeccompJSON) > 0 {
		prog, err = seccomp.CompileOCI(sec.SeccompJSON, sec.Seccomp)
	} else {
		prog, err = seccomp.Compile(seccomp.Profile(sec.Seccomp))
	}
	if err != nil {
		return nil, fmt.Errorf("harden: --seccomp %s: %w", sec.Seccomp, err)
	}
	return prog, nil
}

// HasLimit reports whether rls sets resource res (unix.RLIMIT_*).
func HasLimit(rls []config.Rlimit, res int) bool {
	for _, rl := range rls {
		if rl.Resource == res {
			return true
		}
	}
	return false
}
