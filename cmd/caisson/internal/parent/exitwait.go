//go:build !caisson_nowait

package parent

// waitAtExit is whether Run's last step waits for the network helper and reaps every child (leaveNothing). Only
// the benchmark's comparison build (tag caisson_nowait, tests/bench.sh) turns it off, to measure what the wait
// costs a sandbox's end-to-end time; that build leaves zombies behind, as caisson did before issue 18.
const waitAtExit = true
