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
