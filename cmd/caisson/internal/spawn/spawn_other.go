//go:build !(linux && amd64)

package spawn

func start(a *Attr) (int, error) { return forkExec(a) }
