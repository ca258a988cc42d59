// Package slirp gives a sandbox's network namespace user-mode networking
// through pasta (from the passt package) or slirp4netns, publishes host ports
// into the sandbox, and keeps the sandbox away from the host's loopback
// services unless that is explicitly allowed.
//
// # Roles
//
// The package has two halves that run in different processes:
//
//   - The parent side (host network namespace): [Start] launches the helper
//     against the sandbox init's namespaces (/proc/PID/ns/user and
//     /proc/PID/ns/net), waits until it is ready, and listens on the published
//     host ports. [Network.Close] stops everything again.
//   - The init side (inside the sandbox network namespace, needs no host
//     path): [BringUpLoopback], [ServeChild] for published ports, and the
//     file contents from [ResolvConf] and [Hosts].
//
// # Sequence
//
//  1. Parent: [NewForwarderPair] when ports are published, then start init
//     with CLONE_NEWUSER|CLONE_NEWNET|..., passing the child end to init
//     (for example as an ExtraFiles entry) and closing the parent's copy of
//     it, and write init's uid/gid maps.
//  2. Parent: [Start] with the init's host PID and the parent end as
//     [Options.ChildConn], for every mode except [ModeHost] (for [ModeNone]
//     it starts no helper, only the forwarder, and is needed only when ports
//     are published); then send [Network.Guest] to init.
//  3. Init: [BringUpLoopback] (every mode except [ModeHost]) before anything
//     uses the network, then [ServeChild] in a goroutine that lives as long
//     as init (it needs no host path, so it may start after pivot_root),
//     write [ResolvConf] and [Hosts] into the sandbox's /etc, run the
//     command.
//  4. Parent: watch [Network.Exited] next to the init's exit; when init has
//     exited, call [Network.Close].
//
// # Published ports
//
// Published ports do not go through pasta or slirp4netns. The parent listens
// on HOSTIP:HOSTPORT in the host network namespace; for every TCP connection
// (or UDP flow) it asks init, over the [Options.ChildConn] socket pair, to
// connect to 127.0.0.1:SANDBOXPORT (::1 for IPv6 host addresses) inside the
// sandbox; init passes the connected socket back with SCM_RIGHTS and the
// parent copies bytes in both directions (splice for TCP). Services see the
// connection coming from the sandbox's own loopback address, so they must
// listen on a loopback or wildcard address (a service bound only to
// 10.0.2.100 is not reached). This works the same for both helpers and even
// in [ModeNone].
//
// # Host loopback
//
// With [Options.AllowHostLoopback] false (the default) the sandbox cannot
// reach services bound to the host's 127.0.0.1: slirp4netns runs with
// --disable-host-loopback; pasta runs with --no-map-gw and -T none -U none,
// which also closes the hole in older pasta (Debian bookworm's
// 0.0~git20230309) where the sandbox's own 127.0.0.1 was spliced to the
// host's loopback. Nothing is ever forwarded automatically ("-t auto"): only
// explicit [PortSpec] values are
// published, by this package's forwarder. With
// AllowHostLoopback true, the gateway address 10.0.2.2 ([GuestConfig.HostLoopback],
// "host.caisson.internal" in [Hosts]) reaches the host's 127.0.0.1; the
// sandbox's own 127.0.0.1 stays its own.
//
// DNS: queries sent to [GuestConfig.DNS] (10.0.2.3) port 53 are relayed by
// the helper to the host's resolver (the first nameserver of the host's
// /etc/resolv.conf). Whether that works with a host-loopback resolver such
// as 127.0.0.53 while host loopback is closed was not tested (the tests never
// send DNS queries).
//
// # Helper lifetime
//
// Every helper runs in the foreground as a direct child of the parent, in its
// own process group (so terminal signals do not reach it), with
// Pdeathsig=SIGKILL. It is forked from a goroutine locked to its OS thread
// until the helper has been reaped, so the parent-death signal fires only
// when the parent process dies, whatever goroutine called [Start].
// slirp4netns additionally gets --exit-fd (it exits when the parent's end of
// a pipe closes). Because bookworm's pasta never exits when the namespace
// goes away, [Start] also watches init through a pidfd and stops the network
// as soon as init has exited, even if [Network.Close] is never called. When a
// helper exits, its whole process group is killed before it is reaped.
// [Network.Wait] waits until the helper has been reaped, so that a caller
// that exits after it leaves no zombie behind; [PrepareTap], run by init,
// keeps the helper's own exit short by making tap0 a persistent device that
// goes with the network namespace rather than with the helper.
//
// # Debian bookworm's pasta (0.0~git20230309)
//
//   - Its default -T auto splices the sandbox's own 127.0.0.1:PORT to the
//     host's loopback for every port bound on the host, even with
//     --no-map-gw: closed here with -T none -U none.
//   - Its implicit forwarding (-t/-u auto) publishes every sandbox listener
//     on the host's 0.0.0.0 and does not forward UDP at all: not used; this
//     package's forwarder publishes explicit ports for both helpers.
//   - It does not exit when its target namespace dies: see Helper lifetime.
//   - pasta --version says "unknown version", so [Detect] can only probe
//     flags.
//   - When the sandbox half-closes a TCP connection (shutdown(SHUT_WR))
//     that goes out through pasta, this pasta keeps resending the peer's
//     data instead of passing the FIN on; request/response traffic that
//     does not half-close works. slirp4netns does not have this bug, and
//     published ports never go through pasta.
package slirp
