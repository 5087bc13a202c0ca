/* 32 -> 64-bit switch: identity-maps the first GiB with 2 MiB pages, enables
   PAE, long mode and paging, far-jumps to a 64-bit code segment, checks
   64-bit arithmetic there and reports on COM1. */
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
  mov $hello32, %esi
  call puts
  /* PML4[0] -> PDPT, PDPT[0] -> PD, PD[i] = i * 2 MiB | present | write | huge */
  mov $pdpt, %eax
  or $3, %eax
  mov %eax, pml4
  mov $pd, %eax
  or $3, %eax
  mov %eax, pdpt
  xor %ecx, %ecx
1:
  mov %ecx, %eax
  shl $21, %eax
  or $0x83, %eax
  mov %eax, pd(,%ecx,8)
  inc %ecx
  cmp $512, %ecx
  jne 1b
  mov %cr4, %eax
  or $0x20, %eax          /* PAE */
  mov %eax, %cr4
  mov $pml4, %eax
  mov %eax, %cr3
  mov $0xc0000080, %ecx   /* EFER */
  rdmsr
  or $0x100, %eax         /* LME */
  wrmsr
  mov %cr0, %eax
  or $0x80000000, %eax    /* PG */
  mov %eax, %cr0
  ljmp $0x08, $long64

  .code64
long64:
  mov $0x123456789, %rax  /* needs 64-bit registers */
  shr $32, %rax
  cmp $1, %rax
  jne fail
  mov $0xc0000080, %ecx
  rdmsr
  test $0x400, %eax       /* EFER.LMA: long mode active */
  jz fail
  lea hello64(%rip), %rsi
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
fail:
  mov $0x01, %al
  mov $DEBUG_EXIT, %dx
  out %al, %dx
  hlt

  .code32
PUTS_FUNCTION

  .section .rodata
hello32:
  .asciz "visor-x86: 32-bit protected mode\n"
hello64:
  .asciz "visor-x86: 64-bit long mode ok\n"

  .bss
  .balign 4096
pml4: .space 4096
pdpt: .space 4096
pd:   .space 4096
  .space 4096
stack_top:
