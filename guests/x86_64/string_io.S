/* String port I/O: `rep outsb` sends a whole line to COM1 in one exit
   (count × size bytes, every one of which must reach the UART), and `rep
   insb` reads COM1's scratch register (which holds the last value written
   to it) four times into a buffer that must then hold it four times. Exits through isa-debug-exit with 0x10 (status 33), as serial.S. */
#include "pvh.h"
#define COM1_SCRATCH (COM1 + 7)
PVH_NOTE(_start)
  .code32
  .text
  .globl _start
_start:
  cld
  mov $COM1_SCRATCH, %dx
  mov $0x5a, %al
  out %al, %dx
  mov $buffer, %edi
  mov $4, %ecx
  rep insb
  mov $ok, %esi
  mov $ok_end - ok, %ecx
  cmpl $0x5a5a5a5a, buffer
  je 1f
  mov $bad, %esi
  mov $bad_end - bad, %ecx
1:
  mov $COM1, %dx
  rep outsb
  mov $0x10, %al
  mov $DEBUG_EXIT, %dx
  out %al, %dx
2:
  hlt
  jmp 2b

  .section .rodata
ok:
  .ascii "visor-x86: rep insb and rep outsb ok\n"
ok_end:
bad:
  .ascii "visor-x86: rep insb FAIL\n"
bad_end:

  .bss
buffer:
  .long 0
