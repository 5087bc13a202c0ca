// Sv39 and Sv48 translation from S mode: gigapages, 4 KiB pages, hardware
// A/D updates, permission faults, SUM and MXR, invalid and non-canonical
// addresses, misaligned superpages. Faults are taken in M with mtval.
#include "runtime.h"

#define V (1ul << 0)
#define R (1ul << 1)
#define W (1ul << 2)
#define X (1ul << 3)
#define U (1ul << 4)
#define A (1ul << 6)
#define DIRTY (1ul << 7)
#define PTE(pa, flags) ((((u64)(pa)) >> 12) << 10 | (flags))

static u64 root48[512] __attribute__((aligned(4096)));
static u64 root[512] __attribute__((aligned(4096)));
static u64 l1[512] __attribute__((aligned(4096)));
static u64 l0[512] __attribute__((aligned(4096)));
static uint8_t pages[6][4096] __attribute__((aligned(4096)));
#define VBASE 0x40000000ul

static void report(const char *what) {
  puts(what); puts(": cause="); print_hex(last_trap.cause); puts(" tval="); print_hex(last_trap.tval); putc('\n');
}

static u64 s_load(u64 va) { u64 v; goto_mode(PRV_S); v = *(volatile u64 *)va; back_to_m(); return v; }
static void s_store(u64 va, u64 v) { goto_mode(PRV_S); *(volatile u64 *)va = v; back_to_m(); }
static void s_call(u64 va) { goto_mode(PRV_S); ((void (*)(void))va)(); back_to_m(); }

static void run_suite(const char *mode) {
  puts("== "); puts(mode); putc('\n');
  for (int i = 0; i < 6; i++) for (int j = 0; j < 4096; j++) pages[i][j] = 0;
  *(volatile u64 *)pages[0] = 0x1111;
  *(volatile u64 *)pages[1] = 0x2222;
  *(volatile u64 *)pages[2] = 0x3333;
  *(volatile u32 *)pages[4] = 0x00008067;     // ret
  *(volatile u64 *)pages[5] = 0x5555;
  l0[0] = PTE(pages[0], V | R | W);            // A and D clear: set by hardware
  l0[1] = PTE(pages[1], V | R | A);            // read-only
  l0[2] = PTE(pages[2], V | R | W | U | A | DIRTY);   // user page
  l0[3] = 0;                                   // invalid
  l0[4] = PTE(pages[4], V | R | A);            // not executable
  l0[5] = PTE(pages[5], V | X | A);            // execute-only
  l0[6] = PTE(pages[4], V | R | X | A);        // executable alias of page 4
  l0[7] = PTE(pages[0], V | W | A);            // W without R: reserved
  asm volatile("sfence.vma" ::: "memory");

  clear_trap();
  check(s_load(VBASE) == 0x1111, "load through a 4K page");
  check(last_trap.count == 0, "no fault on a valid page");
  check((l0[0] & (A | DIRTY)) == A, "load sets A only");
  s_store(VBASE + 8, 7);
  check((l0[0] & DIRTY) && *(volatile u64 *)(pages[0] + 8) == 7, "store sets D and reaches the page");
  clear_trap();
  s_store(VBASE + 0x1000, 1);
  report("store to read-only"); check(last_trap.cause == 15 && last_trap.tval == VBASE + 0x1000, "store to read-only page");
  clear_trap();
  s_load(VBASE + 0x2000);
  report("S load of U page"); check(last_trap.cause == 13, "S load of U page without SUM");
  csr_set(mstatus, MSTATUS_SUM);
  clear_trap();
  check(s_load(VBASE + 0x2000) == 0x3333 && last_trap.count == 0, "S load of U page with SUM");
  csr_clear(mstatus, MSTATUS_SUM);
  clear_trap();
  s_load(VBASE + 0x3010);
  report("invalid pte"); check(last_trap.cause == 13 && last_trap.tval == VBASE + 0x3010, "invalid PTE");
  clear_trap();
  s_call(VBASE + 0x4000);
  report("fetch from non-X"); check(last_trap.cause == 12 && last_trap.tval == VBASE + 0x4000, "fetch from non-executable page");
  clear_trap();
  s_call(VBASE + 0x6000);
  check(last_trap.count == 0, "fetch from executable page");
  clear_trap();
  s_load(VBASE + 0x5000);
  report("load from X-only"); check(last_trap.cause == 13, "load from execute-only page without MXR");
  csr_set(mstatus, MSTATUS_MXR);
  clear_trap();
  check(s_load(VBASE + 0x5000) == 0x5555 && last_trap.count == 0, "load from execute-only page with MXR");
  csr_clear(mstatus, MSTATUS_MXR);
  clear_trap();
  s_load(VBASE + 0x7000);
  report("W without R"); check(last_trap.cause == 13, "W-without-R PTE faults");
  clear_trap();
  s_load(0x0000004000000000ul);
  report("non-canonical"); check(last_trap.cause == 13, "non-canonical address faults");
  // A 2 MiB leaf whose physical page number is not 2 MiB aligned.
  l1[1] = PTE(0x80001000ul, V | R | W | A | DIRTY);
  asm volatile("sfence.vma" ::: "memory");
  clear_trap();
  s_load(VBASE + 0x200000);
  report("misaligned superpage"); check(last_trap.cause == 13, "misaligned superpage faults");
  l1[1] = 0;
  // MPRV: M-mode loads translated as S.
  csr_clear(mstatus, MSTATUS_MPP);
  csr_set(mstatus, (1ul << 11) | (1ul << 17));
  u64 via_mprv = *(volatile u64 *)VBASE;
  csr_clear(mstatus, 1ul << 17);
  check(via_mprv == 0x1111, "MPRV translates M-mode loads");
}

int main(void) {
  pmp_allow_all();
  root[0] = PTE(0, V | R | W | A | DIRTY);                   // devices, 1 GiB
  root[1] = PTE(l1, V);
  root[2] = PTE(0x80000000ul, V | R | W | X | A | DIRTY);   // RAM, identity
  l1[0] = PTE(l0, V);
  root48[0] = PTE(root, V);

  csr_write(satp, (8ul << 60) | ((u64)root >> 12));
  check(csr_read(satp) >> 60 == 8, "Sv39 accepted");
  run_suite("sv39");
  csr_write(satp, (9ul << 60) | ((u64)root48 >> 12));
  check(csr_read(satp) >> 60 == 9, "Sv48 accepted");
  run_suite("sv48");
  u64 before = csr_read(satp);
  csr_write(satp, (5ul << 60) | ((u64)root >> 12));         // a reserved mode
  check(csr_read(satp) == before, "unsupported mode leaves satp unchanged");
  csr_write(satp, 0);
  return failures();
}
