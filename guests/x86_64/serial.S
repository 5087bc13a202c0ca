/* Smallest guest: prints a line on COM1 from 32-bit PVH entry and exits
   through isa-debug-exit with value 0x10 (visor and QEMU exit (0x10<<1)|1 = 33).
   Built twice: as an ELF64 (x86-64) and, with -m32 -DELF32, as an ELF32
   (i386) image, the other container a PVH kernel may come in. */
#include "pvh.h"
#ifdef ELF32
#define MESSAGE "visor-x86: serial ok (elf32)\n"
#else
#define MESSAGE "visor-x86: serial ok\n"
#endif
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
  .asciz MESSAGE
