/* 100,000 writes to the POST-code port 0x80: each is a port-I/O exit to the
   VMM. Used by `cargo xtask bench kvm` to measure the cost of a trapped
   port write (against the `serial` guest as the baseline). */
#include "pvh.h"
PVH_NOTE(_start)
  .code32
  .text
  .globl _start
_start:
  mov $100000, %ecx
  xor %eax, %eax
1:
  out %al, $0x80
  inc %eax
  loop 1b
  mov $done, %esi
  mov $COM1, %dx
2:
  lodsb
  test %al, %al
  jz 3f
  out %al, %dx
  jmp 2b
3:
  mov $0x10, %al
  mov $DEBUG_EXIT, %dx
  out %al, %dx
  hlt

  .section .rodata
done:
  .asciz "visor-x86: 100000 port writes\n"
