/* HLT with a timer: remaps the 8259 PIC, programs the 8254 PIT at ~100 Hz,
   enables interrupts and halts until three IRQ0 ticks have arrived; the
   interrupt wakes the halted vCPU (in-kernel PIC and PIT under KVM). */
#include "pvh.h"
#include "print32.h"
PVH_NOTE(_start)
FLAT_GDT
  .code32
  .text
  .globl _start
_start:
  LOAD_FLAT_GDT
  mov $stack_top, %esp
  /* IDT: every vector to `spurious`, vector 32 (IRQ0) to `tick`. */
  xor %ecx, %ecx
1:
  mov $spurious, %eax
  cmp $32, %ecx
  jne 2f
  mov $tick, %eax
2:
  mov %ax, idt(,%ecx,8)
  movw $0x10, idt+2(,%ecx,8)
  movw $0x8e00, idt+4(,%ecx,8)
  shr $16, %eax
  mov %ax, idt+6(,%ecx,8)
  inc %ecx
  cmp $48, %ecx
  jne 1b
  lidt idt_pointer
  /* PIC: ICW1-4, vectors 32-47, only IRQ0 unmasked. */
  mov $0x11, %al; out %al, $0x20; out %al, $0xa0
  mov $0x20, %al; out %al, $0x21
  mov $0x28, %al; out %al, $0xa1
  mov $0x04, %al; out %al, $0x21
  mov $0x02, %al; out %al, $0xa1
  mov $0x01, %al; out %al, $0x21; out %al, $0xa1
  mov $0xfe, %al; out %al, $0x21
  mov $0xff, %al; out %al, $0xa1
  /* PIT channel 0, mode 2, divisor 11932 (~100 Hz). */
  mov $0x34, %al; out %al, $0x43
  mov $0x9c, %al; out %al, $0x40
  mov $0x2e, %al; out %al, $0x40
  sti
3:
  cmpl $3, ticks
  jae 6f
  hlt
  jmp 3b
6:
  cli
  mov $done, %esi
  call puts
  EXIT(0x10)

/* The tick handler does not IRET (some software KVM backends cannot
   emulate it): it drops the interrupt frame and resumes the wait loop. */
tick:
  incl ticks
  mov $0x20, %al
  out %al, $0x20          /* EOI */
  add $12, %esp           /* EIP, CS, EFLAGS */
  sti
  jmp 3b                  /* re-check the count, then halt again */

spurious:
  mov $unexpected, %esi
  call puts
  pop %eax
  call print_hex
  mov $newline, %esi
  call puts
  EXIT(0x01)

/* Prints %eax as 8 hex digits on COM1. */
print_hex:
  mov $8, %ecx
  mov $COM1, %dx
5:
  rol $4, %eax
  push %eax
  and $0xf, %eax
  mov hexdigits(%eax), %al
  out %al, %dx
  pop %eax
  loop 5b
  ret

PUTS_FUNCTION

  .section .rodata
done:
  .asciz "visor-x86: woke from hlt on 3 timer interrupts\n"
unexpected:
  .asciz "visor-x86: unexpected interrupt or exception at "
newline:
  .asciz "\n"
hexdigits:
  .ascii "0123456789abcdef"
idt_pointer:
  .word 48 * 8 - 1
  .long idt

  .bss
  .balign 8
ticks: .long 0
  .balign 16
idt: .space 48 * 8
  .space 4096
stack_top:
