// Package prefault is the first code the caisson binary runs, before the Go runtime starts (issue 14). It asks the
// kernel, in one system call, to map all of the binary's code and read-only data into the new process, and then
// jumps to the runtime's own entry point.
//
// Why: each caisson process (the parent, and init, which is the same binary executed again) otherwise maps these
// pages one page fault at a time, the kernel mapping the 64 KB around each page touched. On the virtual machines
// caisson is measured on, a page fault costs 12-20 µs of CPU, while madvise(MADV_POPULATE_READ) maps the whole
// 5 MB of code and tables from the page cache in ~0.2 ms. Measured in 100 alternated runs: 2.6 ms less CPU per
// `run -- true` (48.1 -> 45.5 ms), 3.1 ms less with `--map single`, 1.6 ms less per `caisson version`.
//
// The pages come from the page cache, shared by every process that runs the binary: they add no private memory, and
// package trim unmaps them again from a sandbox's processes once it has run for a second. Kernels before 5.14 do not
// know MADV_POPULATE_READ and answer EINVAL; the process then starts as it always did.
//
// Only linux/amd64 has the entry (entry_linux_amd64.s), and only a binary linked with it as its ELF entry point runs
// it: the Makefile's build of bin/caisson passes `-ldflags "-E <this package>.entry"`. A plain `go build` works as
// before, without it.
package prefault
