//go:build cgo

package nsenter

// #cgo CFLAGS: -std=gnu11 -O2 -Wall -Wextra -Werror
// #include "nsenter.h"
import "C"

// Linked is true when the C half (the constructor in nsenter.c) is part of the binary: built with cgo.
const Linked = true

// cLayout returns the C sizes of the request and the reply, for TestProtocolLayout.
func cLayout() (request, reply, maxJoin, version int) {
	return int(C.sizeof_struct_nsenter_request), int(C.sizeof_struct_nsenter_reply), int(C.NSENTER_MAX_JOIN), int(C.NSENTER_VERSION)
}
