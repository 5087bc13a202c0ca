// RV64IM: ALU, shifts, multiply/divide edge cases, loads/stores of every
// width with sign extension, misaligned accesses, branches, jumps, CSR counters.
#include "runtime.h"

#define OP(insn, a, b) ({ u64 r_; asm volatile(insn " %0, %1, %2" : "=r"(r_) : "r"((u64)(a)), "r"((u64)(b))); r_; })
#define OPI(insn, a, imm) ({ u64 r_; asm volatile(insn " %0, %1, %2" : "=r"(r_) : "r"((u64)(a)), "i"(imm)); r_; })
#define EXPECT(name, got, want) do { u64 g_ = (got); print_kv(name, g_); check(g_ == (u64)(want), name); } while (0)

static volatile u64 buf[4];

int main(void) {
  const u64 min = 0x8000000000000000ul, m1 = ~0ul;
  EXPECT("add", OP("add", 5, m1), 4);
  EXPECT("sub", OP("sub", 0, 1), m1);
  EXPECT("addw", OP("addw", 0x7fffffff, 1), 0xffffffff80000000ul);
  EXPECT("subw", OP("subw", 0, 0x80000000ul), 0xffffffff80000000ul);
  EXPECT("sll", OP("sll", 1, 63 + 64), min);
  EXPECT("srl", OP("srl", min, 63), 1);
  EXPECT("sra", OP("sra", min, 63), m1);
  EXPECT("sllw", OP("sllw", 1, 31), 0xffffffff80000000ul);
  EXPECT("srlw", OP("srlw", 0xffffffff80000000ul, 31), 1);
  EXPECT("sraw", OP("sraw", 0x80000000ul, 31), m1);
  EXPECT("slli", OPI("slli", 3, 62), 0xc000000000000000ul);
  EXPECT("srai", OPI("srai", min, 4), 0xf800000000000000ul);
  EXPECT("srliw", OPI("srliw", 0x80000000ul, 4), 0x08000000ul);
  EXPECT("slt", OP("slt", m1, 0), 1);
  EXPECT("sltu", OP("sltu", m1, 0), 0);
  EXPECT("slti", OPI("slti", m1, 0), 1);
  EXPECT("sltiu", OPI("sltiu", 0, -1), 1);
  EXPECT("xori", OPI("xori", 0xf0, -1), ~0xf0ul);
  EXPECT("andi", OPI("andi", m1, -16), ~15ul);
  EXPECT("ori", OPI("ori", 0, -2048), -2048l);
  EXPECT("mul", OP("mul", 0x100000001ul, 0x100000001ul), 0x200000001ul);
  EXPECT("mulh", OP("mulh", m1, m1), 0);
  EXPECT("mulhu", OP("mulhu", m1, m1), m1 - 1);
  EXPECT("mulhsu", OP("mulhsu", m1, m1), m1);
  EXPECT("mulw", OP("mulw", 0x10000, 0x10000), 0);
  EXPECT("div", OP("div", -7l, 2), -3l);
  EXPECT("div_by_zero", OP("div", 7, 0), m1);
  EXPECT("div_overflow", OP("div", min, m1), min);
  EXPECT("divu", OP("divu", m1, 2), m1 >> 1);
  EXPECT("divu_by_zero", OP("divu", 7, 0), m1);
  EXPECT("rem", OP("rem", -7l, 2), -1l);
  EXPECT("rem_by_zero", OP("rem", -7l, 0), -7l);
  EXPECT("rem_overflow", OP("rem", min, m1), 0);
  EXPECT("remu", OP("remu", 7, 0), 7);
  EXPECT("divw", OP("divw", 0x80000000ul, m1), 0xffffffff80000000ul);
  EXPECT("divuw", OP("divuw", 0xffffffffu, 0), m1);
  EXPECT("remw", OP("remw", 0x80000000ul, m1), 0);
  EXPECT("remuw", OP("remuw", 0x80000005ul, 0), 0xffffffff80000005ul);
  u64 r;
  asm volatile("lui %0, 0x80000" : "=r"(r));
  EXPECT("lui", r, 0xffffffff80000000ul);
  asm volatile("auipc %0, 0" : "=r"(r));
  check(r >= 0x80000000ul && r < 0x80100000ul, "auipc");

  // Loads and stores of every width, with sign and zero extension.
  buf[0] = 0x8081828384858687ul;
  volatile uint8_t *b = (volatile uint8_t *)buf;
  EXPECT("lb", (u64)(i64)*(volatile int8_t *)b, 0xffffffffffffff87ul);
  EXPECT("lbu", (u64)*(volatile uint8_t *)b, 0x87);
  EXPECT("lh", (u64)(i64)*(volatile int16_t *)b, 0xffffffffffff8687ul);
  EXPECT("lhu", (u64)*(volatile uint16_t *)b, 0x8687);
  EXPECT("lw", (u64)(i64)*(volatile int32_t *)b, 0xffffffff84858687ul);
  EXPECT("lwu", (u64)*(volatile uint32_t *)b, 0x84858687ul);
  *(volatile uint8_t *)(b + 8) = 0x11;
  *(volatile uint16_t *)(b + 10) = 0x2233;
  *(volatile uint32_t *)(b + 12) = 0x44556677;
  EXPECT("stores", buf[1], 0x4455667722330011ul);
  // Misaligned accesses are performed (as QEMU does), not trapped.
  u64 mis;
  asm volatile("ld %0, 3(%1)" : "=r"(mis) : "r"(buf));
  EXPECT("ld_misaligned", mis, 0x3300118081828384ul);
  asm volatile("sw %0, 1(%1)" :: "r"(0xaabbccddul), "r"(&buf[2]) : "memory");
  EXPECT("sw_misaligned", buf[2] & 0xffffffffff00ul, 0xaabbccdd00ul);

  // Branches and jumps.
  int taken = 0;
  if ((i64)OP("add", m1, 0) < 0) taken |= 1;
  if (OP("add", m1, 0) > 5) taken |= 2;
  EXPECT("branches", taken, 3);
  u64 link;
  asm volatile("jal %0, 1f\n 1:" : "=r"(link));
  check(link != 0, "jal link");

  // Counters advance.
  u64 c0 = csr_read(instret), c1 = csr_read(instret);
  check(c1 > c0, "instret advances");
  u64 t0 = csr_read(cycle);
  check(csr_read(cycle) > t0, "cycle advances");
  return failures();
}
