// Package oneproc starts each of caisson's processes with one Go processor (GOMAXPROCS 1), from before any other
// package of the binary is initialised (issue 14).
//
// Its init is among the first the binary runs: a package that imports only the runtime comes early in Go's order of
// initialisation (TestOneProcFirst checks it against the binary's own trace). A sandbox's two processes, the parent
// and init, mostly wait; init's threads also count against the sandbox's process limits (--pids, --rlimit nproc)
// like the command's own processes, and config.InitThreads assumes this one processor. A second processor made each
// run one more OS thread, and caches of memory spans and pages of its own; measured on a 2-core machine, one
// processor from the start spares the pair ~95 page faults and ~2 ms of CPU per sandbox, and ~280 KiB of their
// resident memory. Setting it later (as init once did) flushes the second processor's caches instead, which costs
// both.
//
// Parts that move data (the strict posture's stdio relay, the published-port forwarder) and every command other
// than the sandbox's own processes call Restore, so that none of them runs on fewer processors than before.
package oneproc

import "runtime"

func init() {
	runtime.GOMAXPROCS(1)
}

// Restore gives the process the processors Go would have given it: one per CPU it may run on (runtime.NumCPU).
func Restore() {
	runtime.GOMAXPROCS(runtime.NumCPU())
}
