// The H extension where QEMU 10.0 departs from the spec: each case checks
// what the spec says, so this program is self-checked only, not compared
// with QEMU (the README lists the differences).
#include "hyp.h"

static u64 g_root[2048] __attribute__((aligned(16384)));
static u64 g_l1[512] __attribute__((aligned(4096)));
static u64 g_l0[512] __attribute__((aligned(4096)));
static u64 vs_root[512] __attribute__((aligned(4096)));   // reached at GPA 0x1_0000_0000
static volatile u64 page[512] __attribute__((aligned(4096)));
#define GPA_TABLE 0x100000000ul
#define GPA_PAGE 0x100001000ul

static void report(const char *what) {
  puts(what); puts(": cause="); print_hex(last_trap.cause);
  puts(" mode="); print_dec(last_trap.mode);
  puts(" tval2="); print_hex(last_trap.tval2);
  puts(" tinst="); print_hex(last_trap.tinst);
  puts(" gva="); print_dec(last_trap.gva);
  putc('\n');
}

static volatile u64 seen[4];
static volatile int nseen;

static int hook(u64 cause, int mode) {
  u64 code = cause & 0xff;
  if (nseen < 4) seen[nseen++] = code | (u64)mode << 8;
  if (mode == PRV_S && (code == 2 || code == 6 || code == 10)) { csr_clear(hvip, 1ul << code); return 1; }
  return 0;
}

int main(void) {
  extern void strap_entry(void), vstrap_entry(void);
  pmp_allow_all();
  csr_write(stvec, (u64)strap_entry);
  csr_write(vstvec, (u64)vstrap_entry);

  // VU-mode reaching a supervisor CSR: virtual instruction (QEMU: illegal).
  IN_MODE(PRV_VU, "csrr t0, sstatus"); report("VU reads sstatus");
  check(last_trap.cause == 22, "VU and S CSRs: virtual instruction");
  // SRET in VU: virtual instruction (QEMU: illegal).
  IN_MODE(PRV_VU, "sret"); report("VU sret");
  check(last_trap.cause == 22, "VU and SRET: virtual instruction");
  // WFI in VU with mstatus.TW: illegal (QEMU: virtual instruction).
  csr_set(mstatus, MSTATUS_TW);
  IN_MODE(PRV_VU, "wfi"); report("VU wfi with TW");
  check(last_trap.cause == 2, "TW binds VU: illegal");
  csr_clear(mstatus, MSTATUS_TW);
  // mstatus.TSR binds HS only: VS's SRET returns (QEMU: illegal).
  csr_set(mstatus, MSTATUS_TSR);
  clear_trap();
  goto_mode(PRV_VS);
  csr_set(sstatus, SSTATUS_SPP);
  asm volatile("la t0, 1f\n csrw sepc, t0\n sret\n 1:" ::: "t0", "memory");
  back_to_m();
  report("VS sret with TSR");
  check(last_trap.count == 0, "TSR does not bind VS");
  csr_clear(mstatus, MSTATUS_TSR);

  // A trap into M from V=1 whose tval is not an address: GVA stays 0 (QEMU: 1).
  IN_MODE(PRV_VS, ".word 0xffffffff"); report("illegal in VS, to M");
  check(last_trap.cause == 2 && !last_trap.gva, "GVA only for guest virtual addresses");
  // EBREAK's tval is the guest's pc: GVA=1 in HS too (QEMU: 0).
  csr_write(medeleg, 1ul << 3);
  IN_MODE(PRV_VS, "ebreak"); report("ebreak in VS, to HS");
  check(last_trap.mode == PRV_S && last_trap.cause == 3 && last_trap.gva, "ebreak sets GVA");
  // A trap delegated to VS leaves hstatus.GVA and htval alone (QEMU clears them).
  csr_write(hstatus, HSTATUS_GVA);
  csr_write(htval, 0x1234);
  csr_write(medeleg, 1ul << 2);
  csr_write(hedeleg, 1ul << 2);
  IN_MODE(PRV_VS, ".word 0"); report("illegal in VS, to VS");
  check(last_trap.mode == PRV_VS && (csr_read(hstatus) & HSTATUS_GVA) && csr_read(htval) == 0x1234,
        "VS traps leave hstatus.GVA and htval");
  csr_write(medeleg, 0);
  csr_write(hedeleg, 0);
  csr_write(hstatus, 0);
  // A misaligned AMO in VS, taken in HS: its tval is a guest virtual
  // address, so GVA is set (QEMU reports the fault as a load, cause 4).
  csr_write(medeleg, 1ul << 6);
  static volatile u64 word[2];
  u64 misaligned = (u64)&word[0] + 4;
  clear_trap();
  goto_mode(PRV_VS);
  asm volatile("amoadd.d zero, zero, (%0)" :: "r"(misaligned) : "memory");
  back_to_m();
  report("misaligned AMO in VS, to HS");
  check(last_trap.mode == PRV_S && last_trap.cause == 6 && last_trap.gva, "misaligned AMO sets GVA");
  csr_write(medeleg, 0);
  // henvcfg.STCE written while menvcfg.STCE is clear stays zero (QEMU keeps it).
  csr_write(menvcfg, 0);
  csr_write(henvcfg, MENVCFG_STCE);
  csr_write(menvcfg, MENVCFG_STCE);
  check((csr_read(henvcfg) & MENVCFG_STCE) == 0, "henvcfg.STCE read-only zero while menvcfg.STCE is");
  csr_write(menvcfg, 0);

  // htinst is writable (QEMU ignores writes).
  csr_write(htinst, 0x3000);
  check(csr_read(htinst) == 0x3000, "htinst writable");
  // VMIDLEN is 14 and the root's PPN is 16 KiB aligned (QEMU keeps 16 VMID bits and PPN[1:0]).
  csr_write(hgatp, 8ul << 60 | 0xfffful << 44 | 0x80003);
  print_kv("hgatp after writing VMID and PPN all ones", csr_read(hgatp));
  check(csr_read(hgatp) == (8ul << 60 | 0x3ffful << 44 | 0x80000), "hgatp VMID 14 bits, PPN[1:0] zero");
  csr_write(hgatp, 0);

  // Two stages with the VS root in a G page that is read-only, and a VS
  // leaf without A: writing A back is an implicit store the G-stage
  // refuses; the fault is the load's (21) with the store pseudo-instruction.
  g_root[2] = PTE(0x80000000ul, PTE_V | PTE_R | PTE_W | PTE_X | PTE_U | PTE_A | PTE_D);
  g_root[4] = PTE(g_l1, PTE_V);
  g_l1[0] = PTE(g_l0, PTE_V);
  g_l0[0] = PTE(vs_root, PTE_V | PTE_R | PTE_U | PTE_A);                          // read-only
  g_l0[1] = PTE(page, PTE_V | PTE_R | PTE_W | PTE_X | PTE_U | PTE_A | PTE_D);
  // VA 0x4000_0000: a VS-stage gigapage onto GPA 0x1_0000_0000, without A
  // (so VA 0x4000_1000 is GPA_PAGE).
  vs_root[1] = PTE(GPA_TABLE, PTE_V | PTE_R | PTE_W | PTE_X);
  csr_write(hgatp, 8ul << 60 | (u64)g_root >> 12);
  csr_write(vsatp, SV39 | GPA_TABLE >> 12);
  HFENCE_GVMA();
  csr_set(hstatus, HSTATUS_SPVP);
  clear_trap(); (void)HLV("hlv.d", 0x40001000ul); report("A update through a read-only G page");
  check(last_trap.cause == 21 && last_trap.tval2 == (GPA_TABLE + 8) >> 2 && last_trap.tinst == 0x3020,
        "implicit store: pseudo-instruction 0x3020");
  check(last_trap.gva, "HLV faults taken in M set GVA");
  // HLVX faults are load faults (QEMU reports fetch faults): a page that
  // is readable but not executable.
  g_l0[0] = PTE(vs_root, PTE_V | PTE_R | PTE_W | PTE_U | PTE_A | PTE_D);
  vs_root[1] = PTE(GPA_TABLE, PTE_V | PTE_W | PTE_R | PTE_A | PTE_D);
  HFENCE_GVMA();
  clear_trap(); (void)HLV("hlvx.wu", 0x40001000ul); report("hlvx of a non-executable page");
  check(last_trap.cause == 13, "hlvx faults are load page faults");
  csr_clear(hstatus, HSTATUS_SPVP);
  csr_write(hgatp, 0);
  csr_write(vsatp, 0);
  HFENCE_GVMA();

  // Three VS interrupts for HS at once, raised through hvip: taken in the
  // spec's order VSEI, VSSI, VSTI (QEMU takes VSSI first and never
  // delivers hvip.VSTIP here).
  interrupt_hook = hook;
  csr_write(hideleg, 0);
  csr_write(hie, MIP_VSSIP | MIP_VSTIP | MIP_VSEIP);
  nseen = 0;
  csr_set(hvip, MIP_VSSIP | MIP_VSTIP | MIP_VSEIP);
  goto_mode(PRV_VS);
  for (volatile long i = 0; i < 1000000 && nseen < 3; i++) {}
  back_to_m();
  puts("HS interrupts in order:");
  for (int i = 0; i < nseen; i++) { putc(' '); print_hex(seen[i]); }
  putc('\n');
  check(nseen == 3 && seen[0] == 0x10a && seen[1] == 0x102 && seen[2] == 0x106, "VSEI, VSSI, VSTI");
  csr_write(hie, 0);
  interrupt_hook = 0;
  return failures();
}
