// The hypervisor (H) extension, checked from the inside and compared with
// QEMU: entering and leaving VS/VU, trap routing with and without
// delegation, virtual-instruction exceptions, two-stage translation and its
// guest-page faults (htval/mtval2, htinst/mtinst), HLV/HLVX/HSV from HS, M
// and U (hstatus.HU), HFENCE and VMIDs, hvip and the VS timer.
//
// Every value printed is one the spec defines and QEMU 10 agrees on; the
// cases where QEMU departs from the spec are in hyp_spec.c, which is not
// compared. Page-table entries carry A and D already (QEMU's VS-stage does
// not set them unless henvcfg.ADUE).
#include "hyp.h"

// Guest physical layout: 0x8000_0000.. (this program, its data and the
// VS-stage tables) maps 1:1 through a G-stage gigapage; 0x1_0000_0000 +
// n * 4 KiB are test pages (see g_map below).
#define GPA_TEST 0x100000000ul
#define GPA(n) (GPA_TEST + (n) * 0x1000ul)
// The VS-stage maps VA 0x4000_0000 + n * 4 KiB (see vs_map).
#define VA(n) (0x40000000ul + (n) * 0x1000ul)

static u64 g_root[2048] __attribute__((aligned(16384)));
static u64 g_root2[2048] __attribute__((aligned(16384)));
static u64 g_l1[512] __attribute__((aligned(4096)));
static u64 g_l0[512] __attribute__((aligned(4096)));
static u64 g_l0_other[512] __attribute__((aligned(4096)));
static u64 vs_root[512] __attribute__((aligned(4096)));
static u64 vs_l1[512] __attribute__((aligned(4096)));
static u64 vs_l0[512] __attribute__((aligned(4096)));
static volatile u64 page_a[512] __attribute__((aligned(4096)));
static volatile u64 page_b[512] __attribute__((aligned(4096)));
static volatile u64 page_c[512] __attribute__((aligned(4096)));
static volatile u64 page_d[512] __attribute__((aligned(4096)));

static void report(const char *what) {
  puts(what); puts(": cause="); print_hex(last_trap.cause);
  puts(" tval="); print_hex(last_trap.tval);
  puts(" mode="); print_dec(last_trap.mode);
  puts(" virt="); print_dec(last_trap.from_virt);
  putc('\n');
}

// Also the values guest-page faults define (`gva` only where QEMU sets
// GVA as the spec says: not for HLV faults taken in M).
static void report_fault_values(const char *what, int gva) {
  report(what);
  puts("  tval2="); print_hex(last_trap.tval2);
  puts(" tinst="); print_hex(last_trap.tinst);
  if (gva) { puts(" gva="); print_dec(last_trap.gva); }
  putc('\n');
}

static void report_guest_fault(const char *what) { report_fault_values(what, 1); }

static void g_tables(void) {
  // Root (Sv39x4): index = GPA[40:30]. Gigapage 2 is this program, 1:1.
  g_root[2] = PTE(0x80000000ul, LEAF | PTE_R | PTE_W | PTE_X | PTE_U);
  g_root[4] = PTE(g_l1, PTE_V);
  g_l1[0] = PTE(g_l0, PTE_V);
  g_l0[0] = PTE(page_a, LEAF | PTE_R | PTE_W | PTE_U);        // GPA(0): page A, RW
  g_l0[1] = PTE(page_b, PTE_V | PTE_A | PTE_R | PTE_U);       // GPA(1): page B, read-only
  g_l0[2] = PTE(page_c, LEAF | PTE_X | PTE_U);                // GPA(2): page C, execute-only
  g_l0[3] = PTE(page_d, LEAF | PTE_R | PTE_W);                // GPA(3): no U bit
  // GPA(4) and up: not mapped.
  // A second table set (another VMID): GPA(0) is page D there.
  g_root2[2] = g_root[2];
  g_root2[4] = PTE(g_l1, PTE_V);
  (void)g_l0_other;
}

static void vs_tables(void) {
  vs_root[2] = PTE(0x80000000ul, LEAF | PTE_R | PTE_W | PTE_X);   // the program, 1:1
  vs_root[1] = PTE(vs_l1, PTE_V);
  vs_l1[0] = PTE(vs_l0, PTE_V);
  vs_l0[0] = PTE(GPA(0), LEAF | PTE_R | PTE_W);                   // VA(0) -> page A
  vs_l0[1] = PTE(GPA(1), LEAF | PTE_R | PTE_W);                   // VA(1) -> page B (G: read-only)
  vs_l0[2] = PTE(GPA(5), LEAF | PTE_R | PTE_W);                   // VA(2) -> unmapped GPA
  // VA(3): invalid in the VS-stage.
  vs_l0[4] = PTE(GPA(0), LEAF | PTE_R | PTE_W | PTE_U);           // VA(4) -> page A, U page
  vs_l0[5] = PTE(GPA(2), LEAF | PTE_X);                           // VA(5) -> page C, execute-only
}

static void guest_on(u64 hgatp, u64 vsatp) {
  csr_write(hgatp, hgatp);
  csr_write(vsatp, vsatp);
  HFENCE_GVMA();
}

// VS-mode code the tests run; each returns to M through back_to_m.
static u64 vs_value;

static void __attribute__((noinline)) vs_load(u64 va) {
  goto_mode(PRV_VS);
  vs_value = *(volatile u64 *)va;
  back_to_m();
}

static void __attribute__((noinline)) vs_load32_compressed(u64 va) {
  goto_mode(PRV_VS);
  u64 v;
  asm volatile("mv a0, %1\n c.lw a1, 4(a0)\n mv %0, a1" : "=r"(v) : "r"(va - 4) : "a0", "a1", "memory");
  vs_value = v;
  back_to_m();
}

static void __attribute__((noinline)) vs_store(u64 va, u64 v) {
  goto_mode(PRV_VS);
  *(volatile u64 *)va = v;
  back_to_m();
}

static void __attribute__((noinline)) vs_jump(u64 va) {
  goto_mode(PRV_VS);
  ((void (*)(void))va)();
  back_to_m();
}

static void entering_and_leaving_v(void) {
  // M -> VS by mret with MPV=1; the S CSRs are the VS ones there.
  csr_write(vsscratch, 0x1234);
  csr_write(sscratch, 0x5678);
  goto_mode(PRV_VS);
  vs_value = csr_read(sscratch);
  back_to_m();
  print_kv("sscratch read in VS", vs_value);
  check(vs_value == 0x1234, "sscratch in VS is vsscratch");
  check(csr_read(sscratch) == 0x5678, "sscratch untouched");

  clear_trap();
  goto_mode(PRV_VS);
  asm volatile("li a7, 0\n ecall" ::: "a7");
  back_to_m();
  report("ecall from VS");
  check(last_trap.cause == 10 && last_trap.from_virt, "ecall from VS is cause 10 with MPV");

  clear_trap();
  goto_mode(PRV_VU);
  asm volatile("li a7, 0\n ecall" ::: "a7");
  back_to_m();
  report("ecall from VU");
  check(last_trap.cause == 8 && last_trap.from_virt, "ecall from VU is cause 8 with MPV");

  // HS -> VS by sret with hstatus.SPV=1.
  goto_mode(PRV_S);
  csr_set(hstatus, HSTATUS_SPV);
  csr_set(sstatus, SSTATUS_SPP);
  asm volatile("la t0, 1f\n csrw sepc, t0\n sret\n 1:" ::: "t0", "memory");
  asm volatile("csrr %0, sscratch" : "=r"(vs_value));
  back_to_m();
  check(vs_value == 0x1234, "sret with SPV enters VS");
  print_kv("hstatus after the VS round trip", csr_read(hstatus) & (HSTATUS_SPV | HSTATUS_SPVP));
}

static void delegation(void) {
  // Ecall from VS delegated to HS: scause 10, SPV and SPVP record VS.
  csr_write(medeleg, 1ul << 10);
  clear_trap();
  goto_mode(PRV_VS);
  asm volatile("li a7, 0\n ecall" ::: "a7");
  back_to_m();
  report("ecall from VS to HS");
  check(last_trap.mode == PRV_S && last_trap.cause == 10 && last_trap.from_virt, "delegated to HS");

  // Illegal instructions delegated on to VS: the guest's own handler.
  csr_write(medeleg, 1ul << 2 | 1ul << 10);
  csr_write(hedeleg, 1ul << 2);
  clear_trap();
  goto_mode(PRV_VS);
  asm volatile(".word 0");
  back_to_m();
  report("illegal in VS to VS");
  check(last_trap.mode == PRV_VS && last_trap.cause == 2, "delegated to VS");
  clear_trap();
  goto_mode(PRV_VU);
  asm volatile(".word 0");
  back_to_m();
  report("illegal in VU to VS");
  check(last_trap.mode == PRV_VS && last_trap.cause == 2, "VU to VS");
  // Not delegated by hedeleg: HS takes it.
  csr_write(hedeleg, 0);
  clear_trap();
  goto_mode(PRV_VS);
  asm volatile(".word 0");
  back_to_m();
  report("illegal in VS to HS");
  check(last_trap.mode == PRV_S && last_trap.from_virt, "HS takes what hedeleg keeps");
  csr_write(medeleg, 0);
}

static void virtual_instructions(void) {
  IN_MODE(PRV_VS, "csrr t0, hstatus"); report("VS reads hstatus");
  check(last_trap.cause == 22, "hypervisor CSR from VS");
  IN_MODE(PRV_VS, "csrr t0, 0x200"); report("VS reads vsstatus");
  check(last_trap.cause == 22, "VS CSR from VS");
  IN_MODE(PRV_VS, "csrr t0, 0xe12"); report("VS reads hgeip");
  check(last_trap.cause == 22, "read-only hypervisor CSR from VS");
  IN_MODE(PRV_VS, "csrw 0xe12, zero"); report("VS writes hgeip");
  check(last_trap.cause == 2, "writing a read-only CSR is illegal");
  IN_MODE(PRV_VS, "csrr t0, mstatus"); report("VS reads mstatus");
  check(last_trap.cause == 2, "M CSR from VS is illegal");
  IN_MODE(PRV_VS, H_INSN("hfence.vvma zero, zero")); report("VS hfence.vvma");
  check(last_trap.cause == 22, "hfence.vvma from VS");
  IN_MODE(PRV_VS, H_INSN("hfence.gvma zero, zero")); report("VS hfence.gvma");
  check(last_trap.cause == 22, "hfence.gvma from VS");
  IN_MODE(PRV_VS, H_INSN("hlv.w t0, (sp)")); report("VS hlv.w");
  check(last_trap.cause == 22, "hlv from VS");
  IN_MODE(PRV_VU, H_INSN("hsv.w zero, (sp)")); report("VU hsv.w");
  check(last_trap.cause == 22, "hsv from VU");
  IN_MODE(PRV_VU, "sfence.vma"); report("VU sfence.vma");
  check(last_trap.cause == 22, "sfence.vma from VU");
  IN_MODE(PRV_VU, "wfi"); report("VU wfi");
  check(last_trap.cause == 22, "wfi from VU");

  csr_set(hstatus, HSTATUS_VTW);
  IN_MODE(PRV_VS, "wfi"); report("VS wfi with VTW");
  check(last_trap.cause == 22, "wfi with VTW");
  csr_clear(hstatus, HSTATUS_VTW);
  csr_set(mstatus, MSTATUS_TW);
  IN_MODE(PRV_VS, "wfi"); report("VS wfi with TW");
  check(last_trap.cause == 2, "wfi with TW is illegal");
  csr_clear(mstatus, MSTATUS_TW);

  csr_set(hstatus, HSTATUS_VTSR);
  IN_MODE(PRV_VS, "sret"); report("VS sret with VTSR");
  check(last_trap.cause == 22, "sret with VTSR");
  csr_clear(hstatus, HSTATUS_VTSR);

  csr_set(hstatus, HSTATUS_VTVM);
  IN_MODE(PRV_VS, "sfence.vma"); report("VS sfence.vma with VTVM");
  check(last_trap.cause == 22, "sfence.vma with VTVM");
  IN_MODE(PRV_VS, "csrr t0, satp"); report("VS reads satp with VTVM");
  check(last_trap.cause == 22, "satp with VTVM");
  csr_clear(hstatus, HSTATUS_VTVM);
  IN_MODE(PRV_VS, "csrr t0, satp"); report("VS reads satp");
  check(last_trap.count == 0, "satp without VTVM");

  // Counters: mcounteren says illegal, hcounteren virtual, scounteren (VU) virtual.
  csr_write(mcounteren, 7);
  csr_write(hcounteren, 5);
  csr_write(scounteren, 0);
  IN_MODE(PRV_VS, "rdtime t0"); report("VS rdtime, hcounteren.TM clear");
  check(last_trap.cause == 22, "hcounteren gates time");
  IN_MODE(PRV_VS, "rdcycle t0"); report("VS rdcycle");
  check(last_trap.count == 0, "cycle allowed");
  IN_MODE(PRV_VU, "rdcycle t0"); report("VU rdcycle, scounteren clear");
  check(last_trap.cause == 22, "scounteren gates VU");
  csr_write(mcounteren, 5);
  csr_write(hcounteren, 7);
  IN_MODE(PRV_VS, "rdtime t0"); report("VS rdtime, mcounteren.TM clear");
  check(last_trap.cause == 2, "mcounteren gates time: illegal");
  csr_write(mcounteren, 7);
  csr_write(scounteren, 7);

  // vstimecmp through stimecmp: henvcfg.STCE off is virtual, menvcfg.STCE off illegal.
  csr_write(henvcfg, 0);
  IN_MODE(PRV_VS, "csrr t0, stimecmp"); report("VS stimecmp, henvcfg.STCE clear");
  check(last_trap.cause == 22, "henvcfg.STCE gates vstimecmp");
  csr_write(henvcfg, MENVCFG_STCE);
  IN_MODE(PRV_VS, "csrr t0, stimecmp"); report("VS stimecmp");
  check(last_trap.count == 0, "vstimecmp allowed");

  // What HS-mode could not access either is illegal, not virtual: stimecmp
  // from VU with menvcfg.STCE clear.
  csr_write(menvcfg, 0);
  IN_MODE(PRV_VU, "csrr t0, stimecmp"); report("VU stimecmp, menvcfg.STCE clear");
  check(last_trap.cause == 2, "Sstc off: illegal even from VU");
  csr_write(menvcfg, MENVCFG_STCE);
  csr_write(henvcfg, MENVCFG_STCE);
  // HFENCE stays illegal in U-mode even with hstatus.HU (which opens HLV/HSV only).
  csr_set(hstatus, HSTATUS_HU);
  IN_MODE(PRV_U, H_INSN("hfence.gvma zero, zero")); report("U hfence.gvma with HU");
  check(last_trap.cause == 2, "HU does not open HFENCE");
  csr_clear(hstatus, HSTATUS_HU);

  // Virtual-instruction exceptions delegated to HS, where KVM takes them.
  csr_write(medeleg, 1ul << 22);
  IN_MODE(PRV_VS, "csrr t0, hstatus"); report("VS reads hstatus, to HS");
  check(last_trap.mode == PRV_S && last_trap.cause == 22, "virtual instruction to HS");
  csr_write(medeleg, 0);
}

static void two_stage(void) {
  g_tables();
  vs_tables();
  page_a[0] = 0xaaaa0000; page_a[1] = 0xaaaa0001;
  page_b[0] = 0xbbbb0000;
  page_d[0] = 0xdddd0000;
  csr_write(vsstatus, 0);

  // G-stage only (vsatp Bare): GPA = VA.
  guest_on(SV39X4 | VMID(1) | (u64)g_root >> 12, 0);
  clear_trap(); vs_load(GPA(0));
  print_kv("VS reads GPA(0)", vs_value);
  check(vs_value == 0xaaaa0000 && last_trap.count == 0, "G-stage maps page A");
  clear_trap(); vs_store(GPA(1), 1); report_guest_fault("store to a read-only G page");
  check(last_trap.cause == 23 && last_trap.tval2 == GPA(1) >> 2, "store guest-page fault");
  check(page_b[0] == 0xbbbb0000, "page B unchanged");
  clear_trap(); vs_load(GPA(2)); report_guest_fault("load from an execute-only G page");
  check(last_trap.cause == 21, "load guest-page fault");
  clear_trap(); vs_load(GPA(3) + 8); report_guest_fault("load from a G page without U");
  check(last_trap.cause == 21 && last_trap.tval2 == (GPA(3) + 8) >> 2, "G leaves need U");
  clear_trap(); vs_load(GPA(4) + 0x10); report_guest_fault("load from an unmapped GPA");
  check(last_trap.cause == 21 && last_trap.tval == GPA(4) + 0x10 && last_trap.gva, "unmapped GPA");
  clear_trap(); vs_load(1ul << 41); report_guest_fault("load beyond Sv39x4's 41 bits");
  check(last_trap.cause == 21 && last_trap.tval2 == (1ul << 41) >> 2, "GPA too wide");
  clear_trap(); vs_jump(GPA(1)); report_guest_fault("fetch from a non-executable G page");
  check(last_trap.cause == 20 && last_trap.tinst == 0, "instruction guest-page fault");
  clear_trap(); vs_load32_compressed(GPA(4)); report_guest_fault("c.lw from an unmapped GPA");
  check(last_trap.cause == 21 && (last_trap.tinst & 3) == 1, "compressed: bit 1 of tinst clear");

  // Both stages: VS-stage Sv39 over the G-stage.
  guest_on(SV39X4 | VMID(1) | (u64)g_root >> 12, SV39 | (u64)vs_root >> 12);
  clear_trap(); vs_load(VA(0) + 8);
  print_kv("VS reads VA(0)+8", vs_value);
  check(vs_value == 0xaaaa0001 && last_trap.count == 0, "two stages map page A");
  clear_trap(); vs_store(VA(1), 1); report_guest_fault("VS store, G read-only");
  check(last_trap.cause == 23 && last_trap.tval == VA(1) && last_trap.tval2 == GPA(1) >> 2, "G fault under the VS-stage");
  clear_trap(); vs_load(VA(2)); report_guest_fault("VS load, GPA unmapped");
  check(last_trap.cause == 21 && last_trap.tval2 == GPA(5) >> 2, "final GPA unmapped");
  clear_trap(); vs_load(VA(3)); report_guest_fault("VS load, VS-stage invalid");
  check(last_trap.cause == 13 && last_trap.tval == VA(3) && last_trap.tval2 == 0, "VS-stage page fault");
  clear_trap(); vs_load(VA(4)); report_guest_fault("VS load of a U page");
  check(last_trap.cause == 13, "VS-stage U page from VS");
  // The VS-stage root at an unmapped GPA: the implicit PTE read faults.
  // (Through HLV from M: VS-mode itself could not even fetch.)
  guest_on(SV39X4 | VMID(1) | (u64)g_root >> 12, SV39 | GPA(6) >> 12);
  csr_set(hstatus, HSTATUS_SPVP);
  clear_trap(); (void)HLV("hlv.d", VA(0)); report_fault_values("VS-stage root at an unmapped GPA", 0);
  csr_clear(hstatus, HSTATUS_SPVP);
  check(last_trap.cause == 21 && last_trap.tval2 == (GPA(6) + 8) >> 2 && last_trap.tinst == 0x3000,
        "implicit access: PTE address and pseudo-instruction");
  guest_on(SV39X4 | VMID(1) | (u64)g_root >> 12, SV39 | (u64)vs_root >> 12);

  // Guest-page faults delegated to HS: htval, htinst, hstatus.GVA.
  csr_write(medeleg, 1ul << 21);
  clear_trap(); vs_load(VA(2) + 4); report_guest_fault("VS load, GPA unmapped, to HS");
  check(last_trap.mode == PRV_S && last_trap.tval2 == (GPA(5) + 4) >> 2 && last_trap.gva, "HS sees htval");
  csr_write(medeleg, 0);
  guest_on(0, 0);
}

static u64 hs_value;

static void hypervisor_loads_and_stores(void) {
  guest_on(SV39X4 | VMID(1) | (u64)g_root >> 12, SV39 | (u64)vs_root >> 12);
  csr_write(vsstatus, 0);
  page_a[2] = 0x12345678abcdef01ul;
  // From M: as VS (SPVP=1) through both stages.
  csr_set(hstatus, HSTATUS_SPVP);
  print_kv("hlv.d VA(0)+16 from M", HLV("hlv.d", VA(0) + 16));
  print_kv("hlv.w VA(0)+16", HLV("hlv.w", VA(0) + 16));
  print_kv("hlv.hu VA(0)+20", HLV("hlv.hu", VA(0) + 20));
  print_kv("hlv.b VA(0)+23", HLV("hlv.b", VA(0) + 23));
  HSV("hsv.w", VA(0) + 24, 0xfeedface);
  print_kv("page A word 3 after hsv.w", page_a[3]);
  check(page_a[3] == 0xfeedface, "hsv.w reaches page A");
  // HLVX reads executable code: page C through VA(5).
  page_c[0] = 0x00000013;                       // a nop
  print_kv("hlvx.wu VA(5)", HLV("hlvx.wu", VA(5)));
  // As VU (SPVP=0): VA(0) is not a U page, VA(4) is.
  csr_clear(hstatus, HSTATUS_SPVP);
  print_kv("hlv.d VA(4)+16 as VU", HLV("hlv.d", VA(4) + 16));
  clear_trap(); (void)HLV("hlv.d", VA(0)); report("hlv.d of a supervisor page as VU");
  check(last_trap.cause == 13, "SPVP=0 is VU");
  // vsstatus.SUM lets SPVP=1 reach U pages.
  csr_set(hstatus, HSTATUS_SPVP);
  clear_trap(); (void)HLV("hlv.d", VA(4)); report("hlv.d of a U page as VS");
  check(last_trap.cause == 13, "U page from VS needs SUM");
  csr_write(vsstatus, MSTATUS_SUM);
  print_kv("hlv.d VA(4) as VS with SUM", HLV("hlv.d", VA(4)));
  csr_write(vsstatus, 0);

  // From HS.
  goto_mode(PRV_S);
  hs_value = HLV("hlv.d", VA(0) + 16);
  back_to_m();
  print_kv("hlv.d from HS", hs_value);
  // Faults of hlv from HS, to HS: guest virtual address, htval.
  csr_write(medeleg, 1ul << 21);
  clear_trap();
  goto_mode(PRV_S);
  hs_value = HLV("hlv.w", VA(2) + 8);
  back_to_m();
  report_guest_fault("hlv.w to an unmapped GPA, from HS");
  check(last_trap.mode == PRV_S && last_trap.cause == 21 && last_trap.gva, "hlv fault in HS");
  csr_write(medeleg, 0);

  // From U: illegal unless hstatus.HU.
  clear_trap();
  goto_mode(PRV_U);
  hs_value = HLV("hlv.d", VA(0) + 16);
  back_to_m();
  report("hlv.d from U without HU");
  check(last_trap.cause == 2, "HU=0: illegal");
  csr_set(hstatus, HSTATUS_HU);
  clear_trap();
  goto_mode(PRV_U);
  hs_value = HLV("hlv.d", VA(0) + 16);
  back_to_m();
  print_kv("hlv.d from U with HU", hs_value);
  check(last_trap.count == 0 && hs_value == page_a[2], "HU=1: allowed");
  csr_clear(hstatus, HSTATUS_HU);
  guest_on(0, 0);
}

static void fences_and_vmids(void) {
  page_a[0] = 0xaaaa0000; page_d[0] = 0xdddd0000;
  // VMID 1: GPA(0) -> page A; VMID 2 (other tables): GPA(0) -> page D.
  g_l0_other[0] = PTE(page_d, LEAF | PTE_R | PTE_W | PTE_U);
  static u64 g_l1_other[512] __attribute__((aligned(4096)));
  g_l1_other[0] = PTE(g_l0_other, PTE_V);
  g_root2[4] = PTE(g_l1_other, PTE_V);
  u64 vm1 = SV39X4 | VMID(1) | (u64)g_root >> 12;
  u64 vm2 = SV39X4 | VMID(2) | (u64)g_root2 >> 12;
  guest_on(vm1, 0);
  vs_load(GPA(0)); print_kv("VMID 1 reads GPA(0)", vs_value);
  csr_write(hgatp, vm2);
  vs_load(GPA(0)); print_kv("VMID 2 reads GPA(0)", vs_value);
  csr_write(hgatp, vm1);
  vs_load(GPA(0)); print_kv("VMID 1 again", vs_value);
  check(vs_value == 0xaaaa0000, "VMIDs keep their own translations");
  // Remap GPA(0) in VMID 1's tables; HFENCE.GVMA makes it seen.
  g_l0[0] = PTE(page_b, LEAF | PTE_R | PTE_W | PTE_U);
  HFENCE_GVMA();
  vs_load(GPA(0)); print_kv("VMID 1 after remap and hfence.gvma", vs_value);
  check(vs_value == 0xbbbb0000, "hfence.gvma");
  g_l0[0] = PTE(page_a, LEAF | PTE_R | PTE_W | PTE_U);
  HFENCE_GVMA();
  // The VS-stage: remap VA(0), HFENCE.VVMA from HS.
  guest_on(vm1, SV39 | (u64)vs_root >> 12);
  vs_load(VA(0)); print_kv("VA(0) before the VS remap", vs_value);
  vs_l0[0] = PTE(GPA(1), LEAF | PTE_R | PTE_W);
  goto_mode(PRV_S);
  HFENCE_VVMA();
  back_to_m();
  vs_load(VA(0)); print_kv("VA(0) after hfence.vvma", vs_value);
  check(vs_value == 0xbbbb0000, "hfence.vvma");
  vs_l0[0] = PTE(GPA(0), LEAF | PTE_R | PTE_W);
  HFENCE_VVMA();
  guest_on(0, 0);
}

static volatile u64 seen[4];
static volatile int nseen;

static int hook(u64 cause, int mode) {
  u64 code = cause & 0xff;
  if (nseen < 4) seen[nseen++] = code | (u64)mode << 8;
  if (mode == PRV_VS && code == 1) { csr_clear(sip, MIP_SSIP); return 1; }       // vsip.SSIP = hvip.VSSIP
  if (mode == PRV_VS && code == 5) { csr_write(stimecmp, ~0ul); return 1; }      // vstimecmp
  if (mode == PRV_S && code == 2) { csr_clear(hvip, MIP_VSSIP); return 1; }
  return 0;
}

static void __attribute__((noinline)) vs_wait_for_interrupt(void) {
  goto_mode(PRV_VS);
  csr_set(sstatus, SSTATUS_SIE);
  while (nseen == 0) {}
  csr_clear(sstatus, SSTATUS_SIE);
  back_to_m();
}

static void interrupts(void) {
  extern void strap_entry(void), vstrap_entry(void);
  interrupt_hook = hook;
  csr_write(stvec, (u64)strap_entry);
  csr_write(vstvec, (u64)vstrap_entry);
  csr_write(menvcfg, MENVCFG_STCE);
  csr_write(henvcfg, MENVCFG_STCE);
  print_kv("mideleg (VS bits read-only one)", csr_read(mideleg));

  // hvip.VSSIP delegated to VS: the guest sees a supervisor software interrupt.
  csr_write(hideleg, MIP_VSSIP);
  csr_write(vsie, MIP_SSIP);
  nseen = 0;
  csr_set(hvip, MIP_VSSIP);
  print_kv("vsip with hvip.VSSIP", csr_read(vsip));
  print_kv("hip with hvip.VSSIP", csr_read(hip));
  vs_wait_for_interrupt();
  puts("VSSI in VS:"); putc(' '); print_hex(seen[0]); putc('\n');
  check(nseen == 1 && seen[0] == (1 | PRV_VS << 8), "VSSI taken in VS as cause 1");
  check((csr_read(hvip) & MIP_VSSIP) == 0, "the guest cleared it");

  // Not delegated by hideleg: HS takes VSSI (cause 2) while the guest runs.
  csr_write(hideleg, 0);
  csr_write(hie, MIP_VSSIP);
  nseen = 0;
  csr_set(hvip, MIP_VSSIP);
  vs_wait_for_interrupt();
  puts("VSSI in HS:"); putc(' '); print_hex(seen[0]); putc('\n');
  check(nseen == 1 && seen[0] == (2 | PRV_S << 8), "VSSI taken in HS as cause 2");
  csr_clear(hie, MIP_VSSIP);

  // The VS timer: vstimecmp against time + htimedelta, delegated to VS.
  csr_write(hideleg, MIP_VSTIP);
  csr_write(vsie, MIP_STIP);
  u64 delta = 0x100000000000ul;
  csr_write(htimedelta, delta);
  u64 now = csr_read(time);
  goto_mode(PRV_VS);
  vs_value = csr_read(time);
  back_to_m();
  check(vs_value - delta >= now && vs_value - delta < now + 10000000, "VS time is time + htimedelta");
  nseen = 0;
  csr_write(vstimecmp, csr_read(time) + delta + 100000);
  check((csr_read(hip) & MIP_VSTIP) == 0, "VSTIP not yet");
  vs_wait_for_interrupt();
  puts("VSTI in VS:"); putc(' '); print_hex(seen[0]); putc('\n');
  check(nseen == 1 && seen[0] == (5 | PRV_VS << 8), "VSTI taken in VS as cause 5");
  csr_write(htimedelta, 0);
  csr_write(hideleg, 0);
  csr_write(vsie, 0);

  interrupt_hook = 0;
}

int main(void) {
  extern void strap_entry(void), vstrap_entry(void);
  pmp_allow_all();
  csr_write(stvec, (u64)strap_entry);
  csr_write(vstvec, (u64)vstrap_entry);
  csr_write(mcounteren, 7);
  csr_write(scounteren, 7);
  csr_write(hcounteren, 7);
  csr_write(menvcfg, MENVCFG_STCE);
  csr_write(henvcfg, MENVCFG_STCE);
  print_kv("misa", csr_read(misa));
  check(csr_read(misa) & (1 << ('H' - 'A')), "misa.H");

  entering_and_leaving_v();
  delegation();
  virtual_instructions();
  two_stage();
  hypervisor_loads_and_stores();
  fences_and_vmids();
  interrupts();
  return failures();
}
