/* Smallest guest: prints a line on COM1 from 32-bit PVH entry and exits
   through isa-debug-exit with value 0x10 (visor and QEMU exit (0x10<<1)|1 = 33). */
#include "pvh.h"
PVH_NOTE(_start)
  .code32
  .text
  .globl _start
_start:
  mov $message, %esi
  mov $COM1, %dx
1:
  lodsb
  test %al, %al
  jz 2f
  out %al, %dx
  jmp 1b
2:
  mov $0x10, %al
  mov $DEBUG_EXIT, %dx
  out %al, %dx
3:
  hlt
  jmp 3b

  .section .rodata
message:
  .asciz "visor-x86: serial ok\n"
