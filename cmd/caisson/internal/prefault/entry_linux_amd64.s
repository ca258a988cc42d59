#include "textflag.h"

// entry runs as the process's first instruction, on the stack the kernel built (argc, argv, envp, auxv). It touches
// no memory, stack included. The system call changes AX, CX, R11, DI, SI and DX; the runtime's entry reads none of
// them (it takes argc and argv from the stack), so the process continues exactly as if it had started there.
TEXT ·entry(SB),NOSPLIT|NOFRAME,$0-0
	// From the page of the first instruction...
	LEAQ	runtime·text(SB), DI
	ANDQ	$~0xfff, DI
	// ...up to the page where the writable data begins: the code segment, then the read-only segment (constants,
	// type data, function tables). Writable pages are left to fault in one by one, so that none the process never
	// writes is copied.
	LEAQ	runtime·noptrdata(SB), SI
	ANDQ	$~0xfff, SI
	SUBQ	DI, SI
	MOVQ	$22, DX	// MADV_POPULATE_READ (Linux 5.14). The result is not needed: on failure nothing was changed but
			// the pages mapped so far, and they fault in as usual.
	MOVQ	$28, AX	// SYS_madvise
	SYSCALL
	JMP	_rt0_amd64_linux(SB)
