// The wire format between package nsenter's Go half (the parent, nsenter.Start) and its C half (the constructor in
// nsenter.c). Both sides run on the same machine and binary: native byte order, fixed sizes. The Go half mirrors
// these definitions in proto.go; TestProtocolLayout checks that the two agree.
#ifndef CAISSON_NSENTER_H
#define CAISSON_NSENTER_H

#include <stdint.h>

// NSENTER_ENV names the environment variable that holds the stage's socket descriptor.
#define NSENTER_ENV "_CAISSON_NSENTER"

// NSENTER_VERSION changes whenever the layout below does.
#define NSENTER_VERSION 2

// NSENTER_MAX_JOIN bounds the namespaces joined by descriptor (there are eight kinds).
#define NSENTER_MAX_JOIN 8

// Request flags.
#define NSENTER_FORK 1u              // fork after the namespaces are set; the child continues
#define NSENTER_SETID_AFTER_JOIN 2u  // become uid/gid 0 of the joined user namespace

// Reply types.
#define NSENTER_REPLY_MAPS 1u  // value: the PID whose uid_map and gid_map the parent must write, then ack 1
#define NSENTER_REPLY_PID 2u   // value: the PID of the process that continues into the Go runtime
#define NSENTER_REPLY_ERROR 3u // value: errno; step: what failed

// NSENTER_EXIT_FAILED is the stage's exit status when it fails.
#define NSENTER_EXIT_FAILED 121

// nsenter_request is the parent's one message; njoin namespace descriptors come with it as SCM_RIGHTS, in the
// order of nstypes.
struct nsenter_request {
	uint32_t version;
	uint32_t cloneflags; // CLONE_NEW* to create, after the joins
	uint32_t flags;      // NSENTER_FORK, NSENTER_SETID_AFTER_JOIN
	uint32_t njoin;
	uint32_t nstypes[NSENTER_MAX_JOIN]; // CLONE_NEW* type of each descriptor
	// Offsets of a new time namespace (written before the fork, when timens_offsets is 1).
	int64_t monotonic_sec;
	int64_t boottime_sec;
	uint32_t monotonic_nsec;
	uint32_t boottime_nsec;
	uint32_t timens_offsets;
	uint32_t pad;
};

// nsenter_reply is the stage's message to the parent.
struct nsenter_reply {
	uint32_t type;
	int32_t value;
	char step[56];
};

#endif
