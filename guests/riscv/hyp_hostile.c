// A hostile VS-mode guest: it reaches for memory outside its G-stage map
// (HS/M memory, devices, addresses past RAM), and its hypervisor is given
// odd hgatp modes, G-stage PTEs with reserved bits, misaligned superpages
// and page tables outside RAM, and huge htimedelta values. Every case must
// end in the architectural fault (or, for hgatp, an ignored write); the
// memory outside the guest's map stays untouched. Self-checked.
#include "hyp.h"

#define RWXU (PTE_V | PTE_R | PTE_W | PTE_X | PTE_U | PTE_A | PTE_D)

// The guest's world: GPA 0x8000_0000 + 2 MiB, 1:1 (this program's code,
// data and stack). Everything else is outside it, the secret page first.
#define GUEST_BASE 0x80000000ul
#define GUEST_SIZE 0x200000ul
static u64 g_root[2048] __attribute__((aligned(16384)));
static u64 g_l1[512] __attribute__((aligned(4096)));
static u64 g_l0[512] __attribute__((aligned(4096)));
#define SECRET ((volatile u64 *)0x80400000ul)    // 4 MiB into RAM: not the guest's
#define SECRET_VALUE 0x5ec2e75ec2e7ul

static volatile u64 vs_value;
static int faults;

static void __attribute__((noinline)) vs_load(u64 gpa) {
  goto_mode(PRV_VS);
  vs_value = *(volatile u64 *)gpa;
  back_to_m();
}

static void __attribute__((noinline)) vs_store(u64 gpa, u64 v) {
  goto_mode(PRV_VS);
  *(volatile u64 *)gpa = v;
  back_to_m();
}

static void expect_fault(const char *what, u64 cause, u64 addr) {
  int ok = last_trap.count == 1 && last_trap.cause == cause && last_trap.tval == addr &&
           (cause < 20 || last_trap.tval2 == addr >> 2);
  puts(what); puts(": cause="); print_hex(last_trap.cause); puts(" tval="); print_hex(last_trap.tval);
  puts(" tval2="); print_hex(last_trap.tval2); putc('\n');
  check(ok, what);
  faults += ok;
}

static void map_guest(void) {
  // Sv39x4: GPA 0x8000_0000 (root index 2) -> L1 -> one 2 MiB leaf.
  g_root[2] = PTE(g_l1, PTE_V);
  g_l1[0] = PTE(GUEST_BASE, RWXU);
  csr_write(hgatp, SV39X4 | (u64)g_root >> 12);
  HFENCE_GVMA();
}

static volatile int ticks;
static int hook(u64 cause, int mode) {
  if (mode == PRV_VS && (cause & 0xff) == 5) { ticks++; csr_write(stimecmp, ~0ul); return 1; }
  return 0;
}

int main(void) {
  extern void strap_entry(void), vstrap_entry(void);
  pmp_allow_all();
  csr_write(stvec, (u64)strap_entry);
  csr_write(vstvec, (u64)vstrap_entry);
  *SECRET = SECRET_VALUE;
  map_guest();

  // Reaching outside the map: guest-page faults, nothing read or written.
  u64 outside[] = {GUEST_BASE + GUEST_SIZE, 0x80400000ul, 0x10000000ul, 0x2000000ul, 0xc000000ul,
                   0x100000ul, 0, 0x1ffffffff000ul, 0x80000000ul + 0x40000000ul};
  for (unsigned i = 0; i < sizeof outside / sizeof outside[0]; i++) {
    clear_trap(); vs_load(outside[i]); expect_fault("load outside the map", 21, outside[i]);
    clear_trap(); vs_store(outside[i], 0xbad); expect_fault("store outside the map", 23, outside[i]);
  }
  check(*SECRET == SECRET_VALUE, "the secret page is untouched");
  // Past the 41 bits of Sv39x4, and at the top of the address space.
  clear_trap(); vs_load(1ul << 41); expect_fault("load past 41 bits", 21, 1ul << 41);
  clear_trap(); vs_load(~0ul & ~7ul); expect_fault("load at the top", 21, ~0ul & ~7ul);

  // Odd hgatp modes are ignored: the guest keeps its map.
  u64 good = csr_read(hgatp);
  for (u64 mode = 1; mode < 16; mode++) {
    if (mode == 8 || mode == 9) continue;
    csr_write(hgatp, mode << 60 | 0x123456);
    check(csr_read(hgatp) == good, "an unsupported hgatp mode is ignored");
  }
  clear_trap(); vs_load(GUEST_BASE + 0x1000);
  check(last_trap.count == 0, "the guest still runs on its map");

  // G-stage leaves with reserved or inconsistent bits fault; so do
  // non-leaf entries with A/D/U and misaligned superpages.
  u64 bad_leaves[] = {
      RWXU | 1ul << 54, RWXU | 1ul << 61, RWXU | 1ul << 62, RWXU | 1ul << 63,   // reserved, PBMT, N
      PTE_V | PTE_W | PTE_U | PTE_A | PTE_D,                                    // W without R
  };
  for (unsigned i = 0; i < sizeof bad_leaves / sizeof bad_leaves[0]; i++) {
    g_l1[1] = PTE(GUEST_BASE + GUEST_SIZE, 0) | bad_leaves[i];    // GPA +2 MiB
    HFENCE_GVMA();
    clear_trap(); vs_load(GUEST_BASE + GUEST_SIZE); expect_fault("reserved G-stage PTE bits", 21, GUEST_BASE + GUEST_SIZE);
  }
  g_l1[1] = PTE(GUEST_BASE + GUEST_SIZE + 0x1000, RWXU);          // a 2 MiB leaf, 4 KiB aligned
  HFENCE_GVMA();
  clear_trap(); vs_load(GUEST_BASE + GUEST_SIZE); expect_fault("misaligned G-stage superpage", 21, GUEST_BASE + GUEST_SIZE);
  g_root[3] = PTE(g_l0, PTE_V | PTE_A);                              // non-leaf with A
  HFENCE_GVMA();
  clear_trap(); vs_load(0xc0000000ul); expect_fault("G-stage non-leaf with A", 21, 0xc0000000ul);
  g_root[3] = 0;
  g_l1[1] = 0;
  HFENCE_GVMA();

  // G-stage tables outside RAM: the walk's reads fail as access faults.
  csr_write(hgatp, SV39X4 | 0x3000000ul >> 12);                      // no memory there
  HFENCE_GVMA();
  csr_set(hstatus, HSTATUS_SPVP);
  clear_trap();
  asm volatile(H_INSN("hlv.d %0, (%1)") : "=r"(vs_value) : "r"(GUEST_BASE) : "memory");
  expect_fault("G-stage root outside RAM", 5, GUEST_BASE);
  csr_write(hgatp, SV39X4 | 0xc000000ul >> 12);                      // the PLIC: not page tables
  HFENCE_GVMA();
  clear_trap();
  asm volatile(H_INSN("hlv.d %0, (%1)") : "=r"(vs_value) : "r"(GUEST_BASE) : "memory");
  expect_fault("G-stage root on a device", 5, GUEST_BASE);
  csr_clear(hstatus, HSTATUS_SPVP);
  map_guest();

  // Huge htimedelta: VS time wraps around, and the VS timer still fires.
  interrupt_hook = hook;
  csr_write(mcounteren, 7);
  csr_write(hcounteren, 7);
  csr_write(menvcfg, MENVCFG_STCE);
  csr_write(henvcfg, MENVCFG_STCE);
  csr_write(hideleg, MIP_VSTIP);
  csr_write(vsie, MIP_STIP);
  u64 delta = ~0ul - csr_read(time) - 1000;                          // guest time wraps in ~100 us
  csr_write(htimedelta, delta);
  csr_write(vstimecmp, ~0ul);
  check((csr_read(hip) & MIP_VSTIP) == 0, "VS timer not pending before the wrap");
  while (csr_read(time) + delta > 0xfffffffful) {}                    // wait for the wrap
  csr_write(vstimecmp, 5000);
  goto_mode(PRV_VS);
  csr_set(sstatus, SSTATUS_SIE);
  while (ticks == 0) {}
  csr_clear(sstatus, SSTATUS_SIE);
  vs_value = csr_read(time);
  back_to_m();
  check(ticks == 1, "the VS timer fires after the wrap");
  check(vs_value >= 5000 && vs_value < 0x100000000ul, "VS time wrapped around");
  // The extremes: guest time one behind host time, vstimecmp at the top.
  csr_write(htimedelta, ~0ul);
  csr_write(vstimecmp, ~0ul);
  check((csr_read(hip) & MIP_VSTIP) == 0, "time - 1 is below vstimecmp = max");
  csr_write(htimedelta, 0);
  interrupt_hook = 0;

  print_kv("faults as expected", faults);
  return failures();
}
