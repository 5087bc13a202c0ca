/* The demo VM (a placeholder until VMs come from a packed image): runs
   in VS-mode at guest physical 0x8000_0000, prints through SBI DBCN,
   counts to three and shuts itself down through SBI SRST. Position
   independent: the hypervisor copies it into the VM's memory. */
  .section .rodata.guest_demo, "a"
  .balign 8
  .globl guest_demo_start, guest_demo_end
guest_demo_start:
  li a7, 0x4442434e          /* DBCN */
  li a6, 0                   /* console_write(len, address_lo, address_hi) */
  li a0, hello_end - hello
  lla a1, hello
  li a2, 0
  ecall
  li s0, 1
1:
  li a7, 0x4442434e
  li a6, 2                   /* console_write_byte */
  addi a0, s0, '0'
  ecall
  li a6, 2
  li a0, '\n'
  ecall
  addi s0, s0, 1
  li t0, 4
  bne s0, t0, 1b
  li a7, 0x53525354          /* SRST */
  li a6, 0
  li a0, 0                   /* shutdown */
  li a1, 0
  ecall
2:
  j 2b
hello:
  .ascii "hello from a VM\n"
hello_end:
  .balign 8
guest_demo_end:
