#include "textflag.h"

// Offsets in struct request (spawn_linux_amd64.go; TestRequestLayout checks them).
#define R_FLAGS   0
#define R_CLONE3  8
#define R_PATH    16
#define R_ARGV    24
#define R_ENVP    32
#define R_FDS     40
#define R_NFDS    48
#define R_CAPS    56
#define R_NCAPS   64
#define R_CAPHDR  72
#define R_CAPDATA 80
#define R_MASK    88
#define R_ALL     96
#define R_DFL     104
#define R_ERRNO   136
#define R_STEP    144
#define R_ROEXEC  152
#define R_ROATTR  160
#define R_EMPTY   192

#define SYS_rt_sigaction   13
#define SYS_rt_sigprocmask 14
#define SYS_clone          56
#define SYS_execve         59
#define SYS_fcntl          72
#define SYS_capset         126
#define SYS_prctl          157
#define SYS_exit_group     231
#define SYS_dup3           292
#define SYS_clone3         435
#define SYS_execveat       322
#define SYS_open_tree      428
#define SYS_mount_setattr  442

// A system call failed when the kernel returned -4095..-1.
#define FAILED(label) CMPQ AX, $0xfffffffffffff001; JCC label

// func rawSpawn(req *request) (pid uintptr, errno uintptr)
//
// The child runs on this very stack (CLONE_VM without a stack of its own) while the parent is suspended in the
// clone until the child has executed its program or exited: so the child makes no call, pushes nothing and writes
// only into *req. R12 holds req throughout (system calls preserve every register but AX, CX and R11).
TEXT ·rawSpawn(SB),NOSPLIT|NOFRAME,$0-24
	MOVQ	req+0(FP), R12

	// Block every signal on this thread until the child has its own handlers: a signal handled meanwhile would run
	// Go's handler in the child, on this process's memory.
	MOVQ	$2, DI			// SIG_SETMASK
	LEAQ	R_ALL(R12), SI
	LEAQ	R_MASK(R12), DX
	MOVQ	$8, R10
	MOVQ	$SYS_rt_sigprocmask, AX
	SYSCALL

	MOVQ	R_CLONE3(R12), DI
	TESTQ	DI, DI
	JZ	useclone
	MOVQ	$88, SI			// sizeof(struct clone_args) with cgroup
	MOVQ	$SYS_clone3, AX
	SYSCALL
	JMP	cloned
useclone:
	MOVQ	R_FLAGS(R12), DI
	XORQ	SI, SI			// no stack of its own: this one
	XORQ	DX, DX
	XORQ	R10, R10
	XORQ	R8, R8
	MOVQ	$SYS_clone, AX
	SYSCALL
cloned:
	TESTQ	AX, AX
	JEQ	child

	// Parent: AX is the child's PID or -errno. Restore the signal mask.
	MOVQ	AX, R13
	MOVQ	$2, DI
	LEAQ	R_MASK(R12), SI
	XORQ	DX, DX
	MOVQ	$8, R10
	MOVQ	$SYS_rt_sigprocmask, AX
	SYSCALL
	MOVQ	R13, AX
	FAILED(cloneerr)
	MOVQ	AX, pid+8(FP)
	MOVQ	$0, errno+16(FP)
	RET
cloneerr:
	NEGQ	AX
	MOVQ	$0, pid+8(FP)
	MOVQ	AX, errno+16(FP)
	RET

child:
	// Every signal gets its default action (the handlers are the parent's, copied at the clone), then the
	// parent's mask is restored: the program starts as it would from a plain fork and exec.
	MOVQ	$1, BX
sigloop:
	CMPQ	BX, $9			// SIGKILL and SIGSTOP cannot be changed
	JEQ	signext
	CMPQ	BX, $19
	JEQ	signext
	MOVQ	BX, DI
	LEAQ	R_DFL(R12), SI
	XORQ	DX, DX
	MOVQ	$8, R10
	MOVQ	$SYS_rt_sigaction, AX
	SYSCALL
signext:
	INCQ	BX
	CMPQ	BX, $64
	JLE	sigloop

	MOVQ	$1, R13			// step 1: signal mask
	MOVQ	$2, DI
	LEAQ	R_MASK(R12), SI
	XORQ	DX, DX
	MOVQ	$8, R10
	MOVQ	$SYS_rt_sigprocmask, AX
	SYSCALL
	FAILED(fail)

	// Descriptors: fds[i] becomes i; one already in place only loses its close-on-exec flag.
	MOVQ	$2, R13			// step 2
	XORQ	BX, BX
fdloop:
	CMPQ	BX, R_NFDS(R12)
	JCC	fdsdone
	MOVQ	R_FDS(R12), R8
	MOVLQSX	(R8)(BX*4), DI
	CMPQ	DI, BX
	JNE	fddup
	MOVQ	$2, SI			// F_SETFD
	XORQ	DX, DX
	MOVQ	$SYS_fcntl, AX
	SYSCALL
	FAILED(fail)
	JMP	fdnext
fddup:
	MOVQ	BX, SI
	XORQ	DX, DX
	MOVQ	$SYS_dup3, AX
	SYSCALL
	FAILED(fail)
fdnext:
	INCQ	BX
	JMP	fdloop
fdsdone:

	// Ambient capabilities: into the permitted and inheritable sets, then raised one by one.
	CMPQ	R_NCAPS(R12), $0
	JEQ	exec
	MOVQ	$3, R13			// step 3
	MOVQ	R_CAPHDR(R12), DI
	MOVQ	R_CAPDATA(R12), SI
	MOVQ	$SYS_capset, AX
	SYSCALL
	FAILED(fail)
	MOVQ	$4, R13			// step 4
	XORQ	BX, BX
caploop:
	CMPQ	BX, R_NCAPS(R12)
	JCC	exec
	MOVQ	R_CAPS(R12), R9
	MOVQ	$47, DI			// PR_CAP_AMBIENT
	MOVQ	$2, SI			// PR_CAP_AMBIENT_RAISE
	MOVQ	(R9)(BX*8), DX
	XORQ	R10, R10
	XORQ	R8, R8
	MOVQ	$SYS_prctl, AX
	SYSCALL
	FAILED(fail)
	INCQ	BX
	JMP	caploop

exec:
	CMPQ	R_ROEXEC(R12), $0
	JNE	roexec
	MOVQ	$5, R13			// step 5
	MOVQ	R_PATH(R12), DI
	MOVQ	R_ARGV(R12), SI
	MOVQ	R_ENVP(R12), DX
	MOVQ	$SYS_execve, AX
	SYSCALL
	JMP	fail

	// A detached clone of path's mount (a bind of the file alone), made read-only, and executed through its fd.
roexec:
	MOVQ	$6, R13			// step 6
	MOVQ	$-100, DI		// AT_FDCWD
	MOVQ	R_PATH(R12), SI
	MOVQ	$0x80001, DX		// OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC
	MOVQ	$SYS_open_tree, AX
	SYSCALL
	FAILED(fail)
	MOVQ	AX, BX			// the mount's fd
	MOVQ	$7, R13			// step 7
	MOVQ	BX, DI
	LEAQ	R_EMPTY(R12), SI
	MOVQ	$0x1000, DX		// AT_EMPTY_PATH
	LEAQ	R_ROATTR(R12), R10
	MOVQ	$32, R8			// sizeof(struct mount_attr)
	MOVQ	$SYS_mount_setattr, AX
	SYSCALL
	FAILED(fail)
	MOVQ	$8, R13			// step 8
	MOVQ	BX, DI
	LEAQ	R_EMPTY(R12), SI
	MOVQ	R_ARGV(R12), DX
	MOVQ	R_ENVP(R12), R10
	MOVQ	$0x1000, R8		// AT_EMPTY_PATH
	MOVQ	$SYS_execveat, AX
	SYSCALL

fail:
	NEGQ	AX
	MOVQ	AX, R_ERRNO(R12)
	MOVQ	R13, R_STEP(R12)
	MOVQ	$127, DI
	MOVQ	$SYS_exit_group, AX
	SYSCALL
	HLT
