# Entry of a test VM: a stack, then main; main's return shuts the VM down.
  .section .text.init
  .globl _start
_start:
  la sp, stack_top
  call main
1:
  li a7, 0x53525354
  li a6, 0
  li a0, 0
  ecall
  j 1b
