//go:build caisson_nowait

package parent

// waitAtExit is off in the benchmark's comparison build: see exitwait.go.
const waitAtExit = false
