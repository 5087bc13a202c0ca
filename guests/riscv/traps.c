// Synchronous traps: illegal instructions, ecall from each mode, ebreak,
// delegation to S mode, access faults, privileged
// instructions and CSRs from the wrong mode, MRET/SRET state changes.
#include "runtime.h"

static void report(const char *what) {
  puts(what); puts(": cause="); print_hex(last_trap.cause); puts(" mode="); print_dec(last_trap.mode); putc('\n');
}

int main(void) {
  extern void strap_entry(void);
  pmp_allow_all();
  csr_write(stvec, (u64)strap_entry);

  clear_trap();
  asm volatile(".word 0");                       // all-zero: illegal
  report("zero word"); check(last_trap.cause == 2, "zero word is illegal");
  clear_trap();
  asm volatile(".word 0xffffffff");
  report("all ones"); check(last_trap.cause == 2, "all ones is illegal");
  clear_trap();
  asm volatile("csrr t0, 0x7c0" ::: "t0");       // unimplemented CSR
  report("unknown csr"); check(last_trap.cause == 2, "unknown CSR is illegal");
  clear_trap();
  asm volatile("csrw mvendorid, zero");          // read-only CSR write
  report("write read-only csr"); check(last_trap.cause == 2, "read-only CSR write is illegal");
  clear_trap();
  asm volatile("ecall");
  report("ecall from M"); check(last_trap.cause == 11 && last_trap.mode == PRV_M, "ecall from M");
  clear_trap();
  asm volatile("ebreak");
  report("ebreak"); check(last_trap.cause == 3, "ebreak");
  clear_trap();
  (void)*(volatile u64 *)0x2100000;                 // nothing is mapped there
  report("load from hole"); check(last_trap.cause == 5 && last_trap.tval == 0x2100000, "load access fault");
  clear_trap();
  *(volatile u64 *)0x2100000 = 1;
  report("store to hole"); check(last_trap.cause == 7, "store access fault");
  clear_trap();
  ((void (*)(void))0x2100000)();
  report("fetch from hole"); check(last_trap.cause == 1 && last_trap.tval == 0x2100000, "fetch access fault");

  // S mode: ecall goes to M unless delegated; M-only CSRs and MRET are illegal.
  goto_mode(PRV_S);
  asm volatile("ecall");
  back_to_m();
  report("ecall from S"); check(last_trap.cause == 9 && last_trap.mode == PRV_M, "ecall from S to M");
  csr_write(medeleg, (1 << 2) | (1 << 8) | (1 << 3));
  clear_trap();
  goto_mode(PRV_S);
  (void)csr_read(mstatus);                       // M CSR from S: illegal, delegated
  back_to_m();
  report("mstatus from S"); check(last_trap.cause == 2 && last_trap.mode == PRV_S, "M CSR from S is illegal, delegated");
  clear_trap();
  goto_mode(PRV_S);
  asm volatile("mret");
  back_to_m();
  report("mret from S"); check(last_trap.cause == 2 && last_trap.mode == PRV_S, "mret from S");
  clear_trap();
  goto_mode(PRV_S);
  asm volatile("ebreak");
  back_to_m();
  report("delegated ebreak"); check(last_trap.cause == 3 && last_trap.mode == PRV_S, "ebreak delegated to S");

  // U mode: ecall delegated to S; sret and sfence.vma and wfi are illegal.
  clear_trap();
  goto_mode(PRV_U);
  asm volatile("ecall");
  back_to_m();
  report("ecall from U"); check(last_trap.cause == 8 && last_trap.mode == PRV_S, "ecall from U delegated");
  clear_trap();
  goto_mode(PRV_U);
  asm volatile("sret");
  back_to_m();
  report("sret from U"); check(last_trap.cause == 2, "sret from U");
  clear_trap();
  goto_mode(PRV_U);
  asm volatile("wfi");
  back_to_m();
  report("wfi from U"); check(last_trap.cause == 2, "wfi from U");
  clear_trap();
  goto_mode(PRV_U);
  (void)csr_read(sstatus);
  back_to_m();
  report("sstatus from U"); check(last_trap.cause == 2, "S CSR from U");
  // TSR makes sret in S illegal; TVM makes satp access illegal. (Not
  // delegated: the S handler itself returns with sret.)
  csr_write(medeleg, 0);
  csr_set(mstatus, (1ul << 22) | (1ul << 20));
  clear_trap();
  goto_mode(PRV_S);
  asm volatile("sret");
  back_to_m();
  report("sret with TSR"); check(last_trap.cause == 2, "sret with TSR");
  clear_trap();
  goto_mode(PRV_S);
  (void)csr_read(satp);
  back_to_m();
  report("satp with TVM"); check(last_trap.cause == 2, "satp with TVM");
  csr_clear(mstatus, (1ul << 22) | (1ul << 20));
  csr_write(medeleg, 0);

  // Time and counters from S need mcounteren.
  csr_write(mcounteren, 0);
  clear_trap();
  goto_mode(PRV_S);
  (void)csr_read(time);
  back_to_m();
  report("time without mcounteren"); check(last_trap.cause == 2, "rdtime gated by mcounteren");
  csr_write(mcounteren, 7);
  clear_trap();
  goto_mode(PRV_S);
  (void)csr_read(time);
  back_to_m();
  check(last_trap.count == 0, "rdtime allowed by mcounteren");

  // WARL fields: misa ignores writes, mtvec keeps modes 0/1 only.
  u64 misa = csr_read(misa);
  csr_write(misa, 0);
  check(csr_read(misa) == misa, "misa is read-only");
  print_kv("misa", misa);
  check(((misa >> 62) == 2) && (misa & (1 << ('C' - 'A'))) && (misa & (1 << ('S' - 'A'))), "misa says RV64 with C and S");
  return failures();
}
