# Entry, trap entry/exit for M, S and VS mode. Only hart 0 runs the test.
  .section .text.init
  .globl _start
_start:
  csrr t0, mhartid
  bnez t0, park
  la sp, stack_top
  la t0, mtrap_entry
  csrw mtvec, t0
  li t0, (1 << 13)          # mstatus.FS = Initial
  csrs mstatus, t0
  csrwi fcsr, 0
  call runtime_init
  call main
  call exit
park:
  wfi
  j park

# Saves x1..x31 and the exception pc into a frame, calls HANDLER(frame),
# restores them (the handler may change the pc) and returns with RET.
.macro TRAP_ENTRY name, handler, epc, ret
  .balign 4
  .globl \name
\name:
  addi sp, sp, -33*8
  .irp r,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
  sd x\r, \r*8(sp)
  .endr
  addi t0, sp, 33*8
  sd t0, 2*8(sp)            # the interrupted sp
  csrr t0, \epc
  sd t0, 32*8(sp)
  mv a0, sp
  call \handler
  ld t0, 32*8(sp)
  csrw \epc, t0
  .irp r,1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
  ld x\r, \r*8(sp)
  .endr
  ld sp, 2*8(sp)
  \ret
.endm

  TRAP_ENTRY mtrap_entry, m_trap, mepc, mret
  TRAP_ENTRY strap_entry, s_trap, sepc, sret
  # VS-mode's handler: the same S CSRs, which V=1 turns into the VS ones.
  TRAP_ENTRY vstrap_entry, vs_trap, sepc, sret
