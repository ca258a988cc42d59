//go:build !cgo

package nsenter

// Linked is true when the C half (the constructor in nsenter.c) is part of the binary: built with cgo. Without it
// no stage can join a user or mount namespace, and Start refuses to run.
const Linked = false

func cLayout() (request, reply, maxJoin, version int) { return 0, 0, 0, 0 }
