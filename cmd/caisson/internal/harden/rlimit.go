package harden

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
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

// heapReserve is how much heap init maps before an address-space limit applies to it. Init's live heap stays
// under a few MiB (it reaps, forwards signals and copies terminal bytes); 64 MiB is ample headroom.
const heapReserve = 64 << 20

// reserveHeap grows the Go heap by heapReserve and frees it again, with two collections so the span is swept and
// the collector's own metadata exists. An RLIMIT_AS set on init (and inherited by the command) is below the
// address space a Go process already has reserved (over 1 GiB), so after setrlimit every new mapping fails and
// the runtime dies with "out of memory" whenever it must grow the heap. Freed heap pages stay mapped (the
// scavenger only madvises them), so init's later allocations reuse them and need no new mapping. The allocation
// comes fresh from the kernel and is never touched, so it costs address space, not memory.
func reserveHeap() {
	b := make([]byte, heapReserve)
	runtime.KeepAlive(b)
	b = nil
	runtime.GC()
	runtime.GC()
}

// threadReserve is how many idle OS threads init keeps in hand under a process or address-space limit. Init runs
// with one processor: besides its locked main thread, the signal thread, sysmon, the template thread and one
// thread for its other goroutines, the runtime needs another only while a goroutine blocks in a system call (a
// fork for `caisson exec`); two spare threads cover that.
const threadReserve = 2

// ReserveThreads makes the Go runtime start n more OS threads now and leave them idle. The runtime cannot survive a
// failed thread creation ("failed to create new OS thread", a fatal error), and once the command runs, its
// processes may use up what RLIMIT_NPROC or the cgroup's pids.max allows (a fork bomb does), or RLIMIT_AS may leave
// no room for a new thread's stack. The runtime never destroys an idle thread, so the ones started here are reused
// instead of created. Each goroutine holds its thread (LockOSThread) until all have one, then lets it go.
func ReserveThreads(n int) { holdThreads(n)() }

// holdThreads returns once n goroutines each hold an OS thread of their own (LockOSThread), which the runtime
// creates if it has no idle one; the function it returns lets them go and waits until they have.
func holdThreads(n int) (release func()) {
	var ready, done sync.WaitGroup
	let := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for range n {
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			ready.Done()
			<-let
			runtime.UnlockOSThread()
		}()
	}
	ready.Wait()
	return func() {
		close(let)
		done.Wait()
	}
}
