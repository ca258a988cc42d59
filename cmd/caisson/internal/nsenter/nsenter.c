// The C half of package nsenter: a constructor that runs before the Go runtime starts, while the process still has
// one thread, and does what a multithreaded Go program cannot: setns into user, mount and time namespaces, create a
// user namespace with unshare, and fork into joined or new PID and time namespaces. It acts only when the
// environment holds _CAISSON_NSENTER=FD (set by the Go half's Start on a re-executed caisson-oci); otherwise it
// returns at once. See README.md for the protocol and the order of the steps.
//
// Everything here is small on purpose: no allocation, no stdio, every failure reported to the parent as one reply
// naming the step and its errno, then _exit.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "nsenter.h"

// fail reports step and errno to the parent on sock and ends the process. The stage has done nothing yet that the
// parent must undo: namespaces die with the process.
static void fail(int sock, const char *step, int err)
{
	struct nsenter_reply r;

	memset(&r, 0, sizeof(r));
	r.type = NSENTER_REPLY_ERROR;
	r.value = err;
	strncpy(r.step, step, sizeof(r.step) - 1);
	(void)send(sock, &r, sizeof(r), MSG_NOSIGNAL);
	_exit(NSENTER_EXIT_FAILED);
}

// reply sends a reply of type with value; a parent that is gone ends the stage.
static void reply(int sock, uint32_t type, int32_t value)
{
	struct nsenter_reply r;

	memset(&r, 0, sizeof(r));
	r.type = type;
	r.value = value;
	if (send(sock, &r, sizeof(r), MSG_NOSIGNAL) != (ssize_t)sizeof(r))
		_exit(NSENTER_EXIT_FAILED);
}

// parse_fd reads a small non-negative decimal number, or returns -1.
static int parse_fd(const char *s)
{
	int n = 0;

	if (s == NULL || *s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || n > 100000)
			return -1;
		n = n * 10 + (*s - '0');
	}
	return n;
}

// receive reads the request and the namespace descriptors attached to it. It returns the number of descriptors,
// which must equal req->njoin.
static int receive(int sock, struct nsenter_request *req, int *fds)
{
	char control[CMSG_SPACE(sizeof(int) * NSENTER_MAX_JOIN)];
	struct iovec iov = { .iov_base = req, .iov_len = sizeof(*req) };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control,
		.msg_controllen = sizeof(control),
	};
	struct cmsghdr *c;
	ssize_t n;
	int nfds = 0;

	memset(control, 0, sizeof(control));
	do {
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n == 0)
		_exit(NSENTER_EXIT_FAILED); // the parent is gone: nothing to report to
	if (n < 0)
		fail(sock, "read request", errno);
	if (n != (ssize_t)sizeof(*req) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
		fail(sock, "read request", EPROTO);
	for (c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		if (nfds > NSENTER_MAX_JOIN)
			fail(sock, "read request", EPROTO);
		memcpy(fds, CMSG_DATA(c), sizeof(int) * (size_t)nfds);
	}
	return nfds;
}

// wait_ack blocks until the parent answers a NSENTER_REPLY_MAPS request: 1 means the maps are written.
static void wait_ack(int sock)
{
	uint32_t ack = 0;
	ssize_t n;

	do {
		n = recv(sock, &ack, sizeof(ack), 0);
	} while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(ack) || ack != 1)
		_exit(NSENTER_EXIT_FAILED); // the parent failed to write the maps and reports it itself
}

// become_root switches to uid and gid 0 of the user namespace the process is now in, which the parent has mapped.
// setgroups is refused where the map was written with setgroups denied; that is not an error.
static void become_root(int sock)
{
	if (setgroups(0, NULL) < 0 && errno != EPERM)
		fail(sock, "setgroups", errno);
	if (setresgid(0, 0, 0) < 0)
		fail(sock, "setresgid 0", errno);
	if (setresuid(0, 0, 0) < 0)
		fail(sock, "setresuid 0", errno);
}

// PROC_SUPER_MAGIC is procfs's f_type.
#define PROC_SUPER_MAGIC 0x9fa0

// write_time_offsets writes the offsets of the time namespace the stage's children will be born into, through a
// file checked to be on procfs (a write meant for /proc must land there).
static void write_time_offsets(int sock, const struct nsenter_request *req)
{
	char buf[160];
	struct statfs sfs;
	int fd, n;

	n = snprintf(buf, sizeof(buf), "monotonic %lld %u\nboottime %lld %u\n", (long long)req->monotonic_sec,
		     req->monotonic_nsec, (long long)req->boottime_sec, req->boottime_nsec);
	if (n < 0 || n >= (int)sizeof(buf))
		fail(sock, "format time offsets", EINVAL);
	fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fail(sock, "open timens_offsets", errno);
	if (fstatfs(fd, &sfs) < 0 || sfs.f_type != PROC_SUPER_MAGIC)
		fail(sock, "timens_offsets is not on procfs", EXDEV);
	if (write(fd, buf, (size_t)n) != n)
		fail(sock, "write timens_offsets", errno);
	close(fd);
}

// nsenter_stage is the whole stage; see README.md for the order of the steps and why it is that one.
__attribute__((constructor)) static void nsenter_stage(void)
{
	struct nsenter_request req;
	int fds[NSENTER_MAX_JOIN];
	int sock, nfds, i;
	uint32_t newns;
	pid_t child;

	sock = parse_fd(getenv(NSENTER_ENV));
	if (sock < 0)
		return; // not a stage: the ordinary caisson-oci command line
	memset(&req, 0, sizeof(req));
	nfds = receive(sock, &req, fds);
	if (req.version != NSENTER_VERSION || req.njoin > NSENTER_MAX_JOIN || (uint32_t)nfds != req.njoin)
		fail(sock, "check request", EPROTO);
	// No parent-death signal: every point where the stage waits is a read of the parent's socket, which ends the
	// stage when the parent is gone (EOF), and a signal armed here would kill the container once `create` exits.

	// 1. Join the namespaces given by descriptor, in the parent's order (user first, mount last).
	for (i = 0; i < nfds; i++) {
		if (setns(fds[i], (int)req.nstypes[i]) < 0)
			fail(sock, "setns", errno);
		close(fds[i]);
	}
	if (req.flags & NSENTER_SETID_AFTER_JOIN)
		become_root(sock);

	// 2. A new user namespace, owner of every namespace made after it; the parent writes its maps.
	if (req.cloneflags & CLONE_NEWUSER) {
		if (unshare(CLONE_NEWUSER) < 0)
			fail(sock, "unshare user namespace", errno);
		reply(sock, NSENTER_REPLY_MAPS, (int32_t)getpid());
		wait_ack(sock);
		become_root(sock);
	}

	// 3. The other new namespaces. PID and time namespaces apply to the children made after this.
	newns = req.cloneflags & ~(uint32_t)CLONE_NEWUSER;
	if (newns != 0 && unshare((int)newns) < 0)
		fail(sock, "unshare", errno);
	if (req.timens_offsets)
		write_time_offsets(sock, &req);

	// 4. Fork into the PID and time namespaces. The parent is a child subreaper, so the child, orphaned below, is
	// re-parented to it (and, once the parent exits, to its own subreaper: the engine's shim or monitor).
	if (req.flags & NSENTER_FORK) {
		child = fork();
		if (child < 0)
			fail(sock, "fork", errno);
		if (child > 0) {
			reply(sock, NSENTER_REPLY_PID, (int32_t)child);
			_exit(0);
		}
	} else {
		reply(sock, NSENTER_REPLY_PID, (int32_t)getpid());
	}
	// 5. Continue into the Go runtime; the Go half (nsenter.Stage) takes the socket from here.
}
