// Benchmark (not a test): the CPU workload set of guests/linux/workloads.c,
// built bare-metal with picolibc, run in S-mode on Sv39 and in VS-mode on
// the same Sv39 tables over an Sv39x4 G-stage (both with gigapages, both
// 1:1), and the round trip of a trap from VS-mode into HS-mode and back.
// Prints, for cargo xtask bench hypervisor:
//   bench WORKLOAD MODE TICKS CHECKSUM     (TICKS of the 10 MHz time CSR)
//   bench trap-roundtrip COUNT TICKS
#include "hyp.h"
#include <stddef.h>

struct workload {
  const char *name;
  u64 (*run)(void);
};
extern const struct workload workloads[];
extern const size_t workload_count;
u64 run_workload(size_t w);

#define TRAP_ROUNDTRIPS 200000

// 1:1 gigapages: 0..1 GiB (devices) and the RAM gigapage.
static u64 s_root[512] __attribute__((aligned(4096)));
static u64 g_root[2048] __attribute__((aligned(16384)));

static volatile u64 result;
static volatile size_t current;

static void __attribute__((noinline)) run_in(int mode) {
  goto_mode(mode);
  result = run_workload(current);
  back_to_m();
}

static void __attribute__((noinline)) trap_roundtrips(void) {
  goto_mode(PRV_VS);
  for (int i = 0; i < TRAP_ROUNDTRIPS; i++) asm volatile("li a7, 0\n ecall" ::: "a7", "memory");
  back_to_m();
}

static void print_line(const char *a, const char *b, u64 ticks, u64 checksum) {
  puts("bench "); puts(a); putc(' '); puts(b); putc(' '); print_dec(ticks); putc(' ');
  print_hex(checksum); putc('\n');
}

int main(void) {
  extern void hs_fast_trap(void);
  pmp_allow_all();
  csr_write(mcounteren, 7);
  csr_write(hcounteren, 7);
  csr_write(scounteren, 7);
  csr_write(menvcfg, MENVCFG_STCE);
  s_root[0] = PTE(0, LEAF | PTE_R | PTE_W);
  s_root[2] = PTE(0x80000000ul, LEAF | PTE_R | PTE_W | PTE_X);
  g_root[0] = PTE(0, LEAF | PTE_R | PTE_W | PTE_U);
  g_root[2] = PTE(0x80000000ul, LEAF | PTE_R | PTE_W | PTE_X | PTE_U);
  csr_write(satp, SV39 | (u64)s_root >> 12);
  csr_write(vsatp, SV39 | (u64)s_root >> 12);
  csr_write(hgatp, SV39X4 | (u64)g_root >> 12);
  asm volatile("sfence.vma" ::: "memory");
  HFENCE_GVMA();
  csr_write(vsstatus, 1ul << 13);   // FS for VS-mode's FP (start.S set mstatus.FS)

  for (current = 0; current < workload_count; current++) {
    static const int modes[] = {PRV_S, PRV_VS};
    static const char *names[] = {"S", "VS"};
    for (int m = 0; m < 2; m++) {
      u64 t0 = csr_read(time);
      run_in(modes[m]);
      u64 t1 = csr_read(time);
      print_line(workloads[current].name, names[m], t1 - t0, result);
    }
  }

  // VS ecall -> HS (a handler of six instructions) -> sret, many times.
  csr_write(stvec, (u64)hs_fast_trap);
  csr_write(medeleg, 1ul << 10);
  u64 t0 = csr_read(time);
  trap_roundtrips();
  u64 t1 = csr_read(time);
  csr_write(medeleg, 0);
  puts("bench trap-roundtrip "); print_dec(TRAP_ROUNDTRIPS); putc(' '); print_dec(t1 - t0); putc('\n');
  return 0;
}

// HS-mode's handler for the round trips: skip the ecall, return to VS
// (back_to_m's ecalls go on to the runtime's handler).
asm(".balign 4\n"
    "hs_fast_trap:\n"
    "  csrw sscratch, t0\n"
    "  li t0, 0x4d4d\n"
    "  beq a7, t0, 1f\n"
    "  csrr t0, sepc\n"
    "  addi t0, t0, 4\n"
    "  csrw sepc, t0\n"
    "  csrr t0, sscratch\n"
    "  sret\n"
    "1:\n"
    "  csrr t0, sscratch\n"
    "  j strap_entry\n");
