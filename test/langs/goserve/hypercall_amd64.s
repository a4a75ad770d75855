// The two guest-API calls goserve makes, as kvm_api.h's stubs make them: the number in eax, the
// C arguments in rdi, rsi, rdx, rcx, r8, r9, and `out %eax, $0` (e7 00), which the hypervisor takes.
#include "textflag.h"

// func waitForRequestsPaused(req *kvmRequest)
TEXT ·waitForRequestsPaused(SB), NOSPLIT, $0-8
	MOVQ req+0(FP), DI
	MOVL $0x10002, AX
	BYTE $0xe7; BYTE $0x00
	RET

// func backendResponse(status int64, ctype, ctypeLen, body, bodyLen uintptr)
TEXT ·backendResponse(SB), NOSPLIT, $0-40
	MOVQ status+0(FP), DI
	MOVQ ctype+8(FP), SI
	MOVQ ctypeLen+16(FP), DX
	MOVQ body+24(FP), CX
	MOVQ bodyLen+32(FP), R8
	MOVQ $0, R9
	MOVL $0x10010, AX
	BYTE $0xe7; BYTE $0x00
	RET
