// Runtime for visor's guest test programs: console, exit, traps, privilege changes.
#include "runtime.h"

#define UART ((volatile uint8_t *)0x10000000)
#define SIFIVE_TEST ((volatile u32 *)0x100000)
#define BACK_TO_M 0x4d4d

volatile u64 tohost __attribute__((section(".tohost"), aligned(8)));
volatile u64 fromhost __attribute__((section(".tohost"), aligned(8)));
struct trap_record last_trap;
int (*interrupt_hook)(u64 cause, int mode);
static int failure_count;

void putc(char c) {
  while (!(UART[5] & 0x20)) {}
  UART[0] = c;
}

void puts(const char *s) { while (*s) putc(*s++); }

void print_hex(u64 v) {
  puts("0x");
  for (int i = 60; i >= 0; i -= 4) putc("0123456789abcdef"[(v >> i) & 15]);
}

void print_dec(i64 v) {
  char buf[24]; int n = 0; u64 u = v < 0 ? -(u64)v : (u64)v;
  if (v < 0) putc('-');
  do { buf[n++] = '0' + u % 10; u /= 10; } while (u);
  while (n) putc(buf[--n]);
}

void print_kv(const char *key, u64 v) { puts(key); putc('='); print_hex(v); putc('\n'); }

void check(int ok, const char *what) {
  if (!ok) { failure_count++; puts("FAIL "); puts(what); putc('\n'); }
}

int failures(void) { return failure_count; }

void exit(int code) {
  puts(code ? "RESULT fail\n" : "RESULT pass\n");
  tohost = ((u64)code << 1) | 1;            // HTIF: visor exits here
  *SIFIVE_TEST = code ? ((u32)code << 16) | 0x3333 : 0x5555;   // qemu -M virt exits here
  for (;;) {}
}

#define MSTATUS_MPV (1ul << 39)
#define MSTATUS_GVA (1ul << 38)
#define HSTATUS_GVA (1ul << 6)
#define HSTATUS_SPV (1ul << 7)
#define MISA_H (1ul << 7)

// Whether the hart has the H extension: read once in M (misa is M-only).
static int h_present;
void runtime_init(void) { h_present = (csr_read(misa) & MISA_H) != 0; }
static int has_h(void) { return h_present; }

void goto_mode(int mode) {
  u64 mpv = mode >= PRV_VU ? MSTATUS_MPV : 0;
  if (has_h()) csr_clear(mstatus, MSTATUS_MPV);
  asm volatile(
      "csrc mstatus, %0\n"
      "csrs mstatus, %1\n"
      "la t0, 1f\n"
      "csrw mepc, t0\n"
      "mret\n"
      "1:\n" :: "r"(MSTATUS_MPP), "r"(((u64)mode & 3) << 11 | mpv) : "t0", "memory");
}

// Each ecall climbs one level: a handler that gets it below M continues one
// level up (VU -> VS -> HS); M continues in M and ignores the ones left.
void back_to_m(void) {
  asm volatile("li a7, %0\n ecall\n ecall\n ecall" :: "i"(BACK_TO_M) : "a7", "memory");
}

void clear_trap(void) {
  last_trap.cause = last_trap.tval = last_trap.epc = last_trap.count = 0; last_trap.mode = 0;
  last_trap.tval2 = last_trap.tinst = last_trap.from_virt = last_trap.gva = 0;
}

void pmp_allow_all(void) {
  csr_write(pmpaddr15, ~0ul >> 10);        // NAPOT over the whole address space
  csr_write(pmpcfg2, 0x1ful << 56);         // entry 15: NAPOT | X | W | R
}

static u64 insn_length(u64 pc) { return ((*(volatile uint16_t *)pc) & 3) == 3 ? 4 : 2; }

static void record(u64 cause, u64 tval, u64 epc, int mode) {
  last_trap.cause = cause; last_trap.tval = tval; last_trap.epc = epc; last_trap.mode = mode;
  last_trap.tval2 = last_trap.tinst = last_trap.from_virt = last_trap.gva = 0;
  last_trap.count++;
}

void m_trap(struct frame *f) {
  u64 cause = csr_read(mcause);
  if ((i64)cause < 0) {
    if (interrupt_hook && interrupt_hook(cause, PRV_M)) return;
    puts("unexpected M interrupt "); print_hex(cause); putc('\n'); exit(3);
  }
  if (cause >= 8 && cause <= 11 && f->x[17] == BACK_TO_M) {
    csr_set(mstatus, MSTATUS_MPP);           // return to M
    f->epc += 4;
    return;
  }
  record(cause, csr_read(mtval), f->epc, PRV_M);
  if (has_h()) {
    u64 ms = csr_read(mstatus);
    last_trap.tval2 = csr_read(mtval2);
    last_trap.tinst = csr_read(mtinst);
    last_trap.from_virt = (ms & MSTATUS_MPV) != 0;
    last_trap.gva = (ms & MSTATUS_GVA) != 0;
    csr_clear(mstatus, MSTATUS_GVA);
  }
  if (cause == 12 || cause == 1 || cause == 20) {
    // Fetch faults: return to the caller of the function that faulted.
    f->epc = f->x[1];
    return;
  }
  f->epc += insn_length(f->epc);
}

void s_trap(struct frame *f) {
  u64 cause = csr_read(scause);
  if ((i64)cause < 0) {
    if (interrupt_hook && interrupt_hook(cause, PRV_S)) return;
    puts("unexpected S interrupt "); print_hex(cause); putc('\n'); exit(3);
  }
  if ((cause == 8 || cause == 10) && f->x[17] == BACK_TO_M) {
    csr_set(sstatus, 1ul << 8);              // continue in HS; the next ecall reaches M
    if (has_h()) csr_clear(hstatus, HSTATUS_SPV);
    f->epc += 4;
    return;
  }
  record(cause, csr_read(stval), f->epc, PRV_S);
  if (has_h()) {
    u64 hs = csr_read(hstatus);
    last_trap.tval2 = csr_read(htval);
    last_trap.tinst = csr_read(htinst);
    last_trap.from_virt = (hs & HSTATUS_SPV) != 0;
    last_trap.gva = (hs & HSTATUS_GVA) != 0;
  }
  if (cause == 12 || cause == 1 || cause == 20) { f->epc = f->x[1]; return; }
  f->epc += insn_length(f->epc);
}

// VS-mode's handler (vstvec = vstrap_entry): scause, stval and sepc are
// the VS CSRs here.
void vs_trap(struct frame *f) {
  u64 cause = csr_read(scause);
  if ((i64)cause < 0) {
    if (interrupt_hook && interrupt_hook(cause, PRV_VS)) return;
    puts("unexpected VS interrupt "); print_hex(cause); putc('\n'); exit(3);
  }
  if (cause == 8 && f->x[17] == BACK_TO_M) {
    csr_set(sstatus, 1ul << 8);              // continue in VS; the next ecall climbs on
    f->epc += 4;
    return;
  }
  record(cause, csr_read(stval), f->epc, PRV_VS);
  if (cause == 12) { f->epc = f->x[1]; return; }
  f->epc += insn_length(f->epc);
}
