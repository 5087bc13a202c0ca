// RV64FD: arithmetic in every rounding mode, exception flags, NaN boxing and
// canonical NaNs, conversions with saturation, min/max, compares, classify.
// Prints every result and its flags, so the differential test compares each
// one against QEMU bit for bit; a few known values are checked here too.
#include "runtime.h"

static const u64 D[] = {
  0x0000000000000000, 0x8000000000000000, 0x3ff0000000000000, 0xbff0000000000000,
  0x3fd5555555555555, 0x7fefffffffffffff, 0x0000000000000001, 0x000fffffffffffff,
  0x7ff0000000000000, 0xfff0000000000000, 0x7ff8000000000000, 0x7ff4000000000000,
  0x4330000000000001, 0xc3e0000000000000, 0x41dfffffffc00000, 0x3ff8000000000000,
  0x4004000000000000, 0xc00c000000000000,
};
static const u32 S[] = {
  0x00000000, 0x80000000, 0x3f800000, 0xbf800000, 0x3eaaaaab, 0x7f7fffff, 0x00000001,
  0x007fffff, 0x7f800000, 0xff800000, 0x7fc00000, 0x7fa00000, 0x4b000001, 0xdf000000,
  0x4effffff, 0x3fc00000, 0x40200000, 0xc0600000,
};
#define ND (sizeof D / sizeof D[0])
#define NS (sizeof S / sizeof S[0])

static void out(u64 r) {
  u64 flags = csr_read(fflags);
  csr_write(fflags, 0);
  print_hex(r); putc(' '); print_hex(flags); putc('\n');
}

static u64 boxed(u32 s) { return 0xffffffff00000000ul | s; }

#define FBIN_D(insn, a, b) ({ u64 r_; asm volatile("fmv.d.x f1, %1\n fmv.d.x f2, %2\n" insn " f0, f1, f2\n fmv.x.d %0, f0" : "=r"(r_) : "r"(a), "r"(b) : "f0", "f1", "f2"); r_; })
#define FBIN_S(insn, a, b) ({ u64 r_; asm volatile("fmv.d.x f1, %1\n fmv.d.x f2, %2\n" insn " f0, f1, f2\n fmv.x.d %0, f0" : "=r"(r_) : "r"(boxed(a)), "r"(boxed(b)) : "f0", "f1", "f2"); r_; })
#define FUN_D(insn, a) ({ u64 r_; asm volatile("fmv.d.x f1, %1\n" insn "\n fmv.x.d %0, f0" : "=r"(r_) : "r"(a) : "f0", "f1"); r_; })
#define FTOI(insn, a) ({ u64 r_; asm volatile("fmv.d.x f1, %1\n" insn " %0, f1" : "=r"(r_) : "r"(a) : "f1"); r_; })
#define ITOF(insn, x) ({ u64 r_; asm volatile(insn " f0, %1\n fmv.x.d %0, f0" : "=r"(r_) : "r"(x) : "f0"); r_; })
#define FMA_D(insn, a, b, c) ({ u64 r_; asm volatile("fmv.d.x f1, %1\n fmv.d.x f2, %2\n fmv.d.x f3, %3\n" insn " f0, f1, f2, f3\n fmv.x.d %0, f0" : "=r"(r_) : "r"(a), "r"(b), "r"(c) : "f0", "f1", "f2", "f3"); r_; })
#define FMA_S(insn, a, b, c) ({ u64 r_; asm volatile("fmv.d.x f1, %1\n fmv.d.x f2, %2\n fmv.d.x f3, %3\n" insn " f0, f1, f2, f3\n fmv.x.d %0, f0" : "=r"(r_) : "r"(boxed(a)), "r"(boxed(b)), "r"(boxed(c)) : "f0", "f1", "f2", "f3"); r_; })

static const char *const RM[] = {"rne", "rtz", "rdn", "rup", "rmm"};

static void arith(void) {
  for (int rm = 0; rm < 5; rm++) {
    csr_write(frm, rm);
    puts("rounding "); puts(RM[rm]); putc('\n');
    for (unsigned i = 0; i < ND; i++)
      for (unsigned j = 0; j < ND; j++) {
        out(FBIN_D("fadd.d", D[i], D[j])); out(FBIN_D("fsub.d", D[i], D[j]));
        out(FBIN_D("fmul.d", D[i], D[j])); out(FBIN_D("fdiv.d", D[i], D[j]));
        out(FMA_D("fmadd.d", D[i], D[j], D[(i + j) % ND]));
        out(FMA_D("fnmsub.d", D[i], D[j], D[(i * 7 + j) % ND]));
      }
    for (unsigned i = 0; i < NS; i++)
      for (unsigned j = 0; j < NS; j++) {
        out(FBIN_S("fadd.s", S[i], S[j])); out(FBIN_S("fsub.s", S[i], S[j]));
        out(FBIN_S("fmul.s", S[i], S[j])); out(FBIN_S("fdiv.s", S[i], S[j]));
        out(FMA_S("fmsub.s", S[i], S[j], S[(i + j) % NS]));
        out(FMA_S("fnmadd.s", S[i], S[j], S[(i * 5 + j) % NS]));
      }
    for (unsigned i = 0; i < ND; i++) {
      out(FUN_D("fsqrt.d f0, f1", D[i]));
      out(FUN_D("fcvt.s.d f0, f1", D[i]));
      out(FTOI("fcvt.w.d", D[i])); out(FTOI("fcvt.wu.d", D[i]));
      out(FTOI("fcvt.l.d", D[i])); out(FTOI("fcvt.lu.d", D[i]));
      out(ITOF("fcvt.d.l", D[i])); out(ITOF("fcvt.d.lu", D[i]));
      out(ITOF("fcvt.s.l", D[i])); out(ITOF("fcvt.s.lu", D[i]));
      out(ITOF("fcvt.s.w", D[i])); out(ITOF("fcvt.s.wu", D[i]));
    }
    for (unsigned i = 0; i < NS; i++) {
      out(FUN_D("fsqrt.s f0, f1", boxed(S[i])));
      out(FUN_D("fcvt.d.s f0, f1", boxed(S[i])));
      out(FTOI("fcvt.w.s", boxed(S[i]))); out(FTOI("fcvt.lu.s", boxed(S[i])));
    }
  }
  csr_write(frm, 0);
}

static void non_arith(void) {
  for (unsigned i = 0; i < ND; i++)
    for (unsigned j = 0; j < ND; j++) {
      out(FBIN_D("fmin.d", D[i], D[j])); out(FBIN_D("fmax.d", D[i], D[j]));
      out(FBIN_D("fsgnj.d", D[i], D[j])); out(FBIN_D("fsgnjn.d", D[i], D[j])); out(FBIN_D("fsgnjx.d", D[i], D[j]));
      u64 r; asm volatile("fmv.d.x f1, %1\n fmv.d.x f2, %2\n feq.d %0, f1, f2" : "=r"(r) : "r"(D[i]), "r"(D[j]) : "f1", "f2"); out(r);
      asm volatile("fmv.d.x f1, %1\n fmv.d.x f2, %2\n flt.d %0, f1, f2" : "=r"(r) : "r"(D[i]), "r"(D[j]) : "f1", "f2"); out(r);
      asm volatile("fmv.d.x f1, %1\n fmv.d.x f2, %2\n fle.d %0, f1, f2" : "=r"(r) : "r"(D[i]), "r"(D[j]) : "f1", "f2"); out(r);
    }
  for (unsigned i = 0; i < NS; i++)
    for (unsigned j = 0; j < NS; j++) {
      out(FBIN_S("fmin.s", S[i], S[j])); out(FBIN_S("fmax.s", S[i], S[j]));
      out(FBIN_S("fsgnjx.s", S[i], S[j]));
    }
  for (unsigned i = 0; i < ND; i++) { out(FTOI("fclass.d", D[i])); out(FTOI("fclass.s", boxed(S[i % NS]))); }
}

static void known_values(void) {
  // 1/3 in single precision rounds differently by mode.
  csr_write(frm, 1);
  check(FBIN_S("fdiv.s", 0x3f800000, 0x40400000) == boxed(0x3eaaaaaa), "1/3 rtz");
  csr_write(frm, 3);
  check(FBIN_S("fdiv.s", 0x3f800000, 0x40400000) == boxed(0x3eaaaaab), "1/3 rup");
  csr_write(frm, 0); csr_write(fflags, 0);
  check(FBIN_D("fdiv.d", 0x3ff0000000000000, 0) == 0x7ff0000000000000, "1/0 = inf");
  check(csr_read(fflags) == 0x08, "1/0 raises DZ");
  csr_write(fflags, 0);
  check(FUN_D("fsqrt.d f0, f1", 0xbff0000000000000) == 0x7ff8000000000000, "sqrt(-1) is the canonical NaN");
  check(csr_read(fflags) == 0x10, "sqrt(-1) raises NV");
  csr_write(fflags, 0);
  check(FTOI("fcvt.w.d", 0x7ff8000000000000) == 0x7fffffff, "fcvt.w.d NaN saturates high");
  check(FTOI("fcvt.wu.d", 0xbff0000000000000) == 0, "fcvt.wu.d -1 saturates to 0");
  check(FTOI("fcvt.l.d", 0xfff0000000000000) == 0x8000000000000000, "fcvt.l.d -inf");
  check(FTOI("fcvt.w.d", 0x4004000000000000) == 2, "fcvt.w.d 2.5 rne -> 2");
  check(FTOI("fcvt.w.d", 0x400c000000000000) == 4, "fcvt.w.d 3.5 rne -> 4");
  asm volatile("fmv.d.x f1, %0" :: "r"(0x4004000000000000ul) : "f1");
  u64 away; asm volatile("fcvt.w.d %0, f1, rmm" : "=r"(away));
  check(away == 3, "fcvt.w.d 2.5 rmm -> 3");
  // An improperly boxed single reads as the canonical NaN.
  u64 r; asm volatile("fmv.d.x f1, %1\n fadd.s f0, f1, f1\n fmv.x.d %0, f0" : "=r"(r) : "r"(0x000000003f800000ul) : "f0", "f1");
  check(r == boxed(0x7fc00000), "unboxed single is NaN");
  asm volatile("fmv.w.x f1, %1\n fmv.x.d %0, f1" : "=r"(r) : "r"(0x3f800000ul) : "f1");
  check(r == boxed(0x3f800000), "fmv.w.x NaN-boxes");
  csr_write(fflags, 0);
  check(FMA_D("fmadd.d", 0x7ff0000000000000, 0, 0x7ff8000000000000) == 0x7ff8000000000000, "inf*0+qNaN");
  check(csr_read(fflags) == 0x10, "inf*0+qNaN raises NV");
  csr_write(fflags, 0);
  // Loads and stores of FP registers.
  static volatile double mem[2] = {1.5, 0};
  asm volatile("fld f4, 0(%0)\n fsd f4, 8(%0)" :: "r"(mem) : "f4", "memory");
  check(mem[1] == 1.5, "fld/fsd");
  // An invalid static rounding mode is an illegal instruction.
  clear_trap();
  asm volatile(".insn r 0x53, 5, 0, f0, f1, f2" ::: "f0");   // fadd.s with rm=5
  check(last_trap.cause == 2, "rm=5 is illegal");
  // FS=Off makes FP instructions illegal.
  csr_clear(mstatus, 3ul << 13);
  clear_trap();
  asm volatile("fadd.d f0, f1, f2" ::: "f0");
  check(last_trap.cause == 2, "FS=off traps");
  csr_set(mstatus, 1ul << 13);
}

int main(void) {
  arith();
  non_arith();
  known_values();
  return failures();
}
