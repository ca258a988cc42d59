//go:build !(linux && amd64)

package spawn

import "errors"

func start(a *Attr) (int, error) {
	if a.ReadOnlyExec {
		return 0, errors.New("spawn: ReadOnlyExec is not available on this architecture")
	}
	return forkExec(a)
}

// ReadOnlyExecSupported reports whether Start can take Attr.ReadOnlyExec on this architecture.
const ReadOnlyExecSupported = false

func readOnlyExecStep(string) bool { return false }
