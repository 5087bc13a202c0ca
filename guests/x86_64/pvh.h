/* The PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): the 32-bit entry point
   that Linux's vmlinux, QEMU and visor use to start a kernel without firmware. */
#define PVH_NOTE(entry)            \
  .pushsection .note.Xen, "a";     \
  .balign 4;                       \
  .long 4, 4, 18;                  \
  .asciz "Xen";                    \
  .long entry;                     \
  .popsection

/* Port-I/O exits: COM1 data register, isa-debug-exit (QEMU's iobase). */
#define COM1 0x3f8
#define DEBUG_EXIT 0xf4

/* A flat GDT: 0x08 64-bit code, 0x10 32-bit code, 0x18 data (PVH's selectors). */
#define FLAT_GDT                                   \
  .pushsection .rodata;                            \
  .balign 8;                                       \
gdt:                                               \
  .quad 0;                                         \
  .quad 0x00af9a000000ffff; /* 0x08: 64-bit code */\
  .quad 0x00cf9a000000ffff; /* 0x10: 32-bit code */\
  .quad 0x00cf92000000ffff; /* 0x18: data */       \
gdt_end:                                           \
gdt_pointer:                                       \
  .word gdt_end - gdt - 1;                         \
  .long gdt;                                       \
  .popsection

/* Loads FLAT_GDT and reloads every segment register (32-bit code). */
#define LOAD_FLAT_GDT            \
  lgdt gdt_pointer;              \
  ljmp $0x10, $1f;               \
1:                               \
  mov $0x18, %ax;                \
  mov %ax, %ds; mov %ax, %es;    \
  mov %ax, %fs; mov %ax, %gs;    \
  mov %ax, %ss
