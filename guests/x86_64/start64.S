/* Runtime entry for the C guests: PVH 32-bit entry, identity-map the first
   4 GiB (RAM and the MMIO hole) with 2 MiB pages, enter long mode, call main(), exit with its value
   through isa-debug-exit. Also the 16-bit trampoline application processors
   start in after INIT-SIPI (copied below 1 MiB by the boot CPU). */
#include "pvh.h"
PVH_NOTE(_start)
FLAT_GDT
  .code32
  .text
  .globl _start
_start:
  LOAD_FLAT_GDT
  mov $boot_stack_top, %esp
  call enable_paging
  ljmp $0x08, $start64

/* PAE paging with the identity map, EFER.LME, then CR0.PG (32-bit code). */
enable_paging:
  mov $pdpt, %eax
  or $3, %eax
  mov %eax, pml4
  xor %ecx, %ecx
1:
  mov %ecx, %eax          /* PDPT[i] -> the i-th page directory */
  shl $12, %eax
  add $pd, %eax
  or $3, %eax
  mov %eax, pdpt(,%ecx,8)
  inc %ecx
  cmp $4, %ecx
  jne 1b
  xor %ecx, %ecx
2:
  mov %ecx, %eax          /* 2048 x 2 MiB pages */
  shl $21, %eax
  or $0x83, %eax
  mov %eax, pd(,%ecx,8)
  inc %ecx
  cmp $2048, %ecx
  jne 2b
  mov %cr4, %eax
  or $0x20, %eax
  mov %eax, %cr4
  mov $pml4, %eax
  mov %eax, %cr3
  mov $0xc0000080, %ecx
  rdmsr
  or $0x100, %eax
  wrmsr
  mov %cr0, %eax
  or $0x80000000, %eax
  mov %eax, %cr0
  ret

  .code64
start64:
  mov $boot_stack_top, %rsp
  call main
  mov $DEBUG_EXIT, %dx
  out %al, %dx
2:
  hlt
  jmp 2b

/* Application processors: real mode at the SIPI page -> protected -> long. */
  .code16
  .globl ap_trampoline, ap_trampoline_end
ap_trampoline:
  cli
  mov %cs, %ax
  mov %ax, %ds
  lgdtl ap_gdt_pointer - ap_trampoline
  mov %cr0, %eax
  or $1, %eax
  mov %eax, %cr0
  ljmpl $0x10, $ap32
ap_gdt_pointer:
  .word gdt_end - gdt - 1
  .long gdt
ap_trampoline_end:

  .code32
ap32:
  mov $0x18, %ax
  mov %ax, %ds
  mov %ax, %es
  mov %ax, %ss
  mov $ap_stack_top, %esp
  call enable_paging
  ljmp $0x08, $ap64
  .code64
ap64:
  mov $ap_stack_top, %rsp
  call ap_main
3:
  cli
  hlt
  jmp 3b

  .bss
  .balign 4096
pml4: .space 4096
pdpt: .space 4096
pd:   .space 4 * 4096
  .space 16384
boot_stack_top:
  .space 16384
ap_stack_top:
