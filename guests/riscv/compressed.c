// RV64C: every compressed instruction class, executed and checked.
#include "runtime.h"
#define EXPECT(name, got, want) do { u64 g_ = (got); print_kv(name, g_); check(g_ == (u64)(want), name); } while (0)

static volatile u64 mem[8] __attribute__((aligned(8)));

int main(void) {
  u64 a;
  asm volatile("c.li %0, -7\n c.addi %0, 3" : "=r"(a));              EXPECT("c.li/c.addi", a, -4l);
  asm volatile("c.lui %0, 0x1f\n" : "=r"(a));                         EXPECT("c.lui", a, 0x1f000);
  asm volatile("c.li %0, -1\n c.addiw %0, 1" : "=r"(a));             EXPECT("c.addiw", a, 0);
  asm volatile("mv s0, %1\n c.slli s0, 40\n c.srli s0, 8\n mv %0, s0" : "=r"(a) : "r"(0x1ful) : "s0"); EXPECT("c.slli/c.srli", a, 0x1ful << 32);
  asm volatile("li s0, -256\n c.srai s0, 4\n mv %0, s0" : "=r"(a) :: "s0"); EXPECT("c.srai", a, -16l);
  asm volatile("li s0, 0xff\n c.andi s0, 0x0f\n mv %0, s0" : "=r"(a) :: "s0"); EXPECT("c.andi", a, 0xf);
  asm volatile("li s0, 12\n li s1, 5\n c.sub s0, s1\n mv %0, s0" : "=r"(a) :: "s0", "s1"); EXPECT("c.sub", a, 7);
  asm volatile("li s0, 12\n li s1, 5\n c.xor s0, s1\n mv %0, s0" : "=r"(a) :: "s0", "s1"); EXPECT("c.xor", a, 9);
  asm volatile("li s0, 12\n li s1, 5\n c.or s0, s1\n mv %0, s0" : "=r"(a) :: "s0", "s1"); EXPECT("c.or", a, 13);
  asm volatile("li s0, 12\n li s1, 5\n c.and s0, s1\n mv %0, s0" : "=r"(a) :: "s0", "s1"); EXPECT("c.and", a, 4);
  asm volatile("li s0, 0x7fffffff\n li s1, 1\n c.addw s0, s1\n mv %0, s0" : "=r"(a) :: "s0", "s1"); EXPECT("c.addw", a, 0xffffffff80000000ul);
  asm volatile("li s0, 0\n li s1, 1\n c.subw s0, s1\n mv %0, s0" : "=r"(a) :: "s0", "s1"); EXPECT("c.subw", a, -1l);
  asm volatile("c.mv %0, %1\n c.add %0, %1" : "=&r"(a) : "r"(21ul));  EXPECT("c.mv/c.add", a, 42);
  // Stack-pointer forms.
  asm volatile("c.addi16sp sp, -64\n c.addi4spn s0, sp, 16\n sub %0, s0, sp\n c.addi16sp sp, 64" : "=r"(a) :: "s0", "memory");
  EXPECT("c.addi16sp/c.addi4spn", a, 16);
  asm volatile("li t0, 0x123456789\n c.addi16sp sp, -32\n c.sdsp t0, 8(sp)\n c.ldsp %0, 8(sp)\n c.addi16sp sp, 32" : "=r"(a) :: "t0", "memory");
  EXPECT("c.sdsp/c.ldsp", a, 0x123456789ul);
  asm volatile("li t0, -2\n c.addi16sp sp, -32\n c.swsp t0, 4(sp)\n c.lwsp %0, 4(sp)\n c.addi16sp sp, 32" : "=r"(a) :: "t0", "memory");
  EXPECT("c.swsp/c.lwsp", a, -2l);
  asm volatile("fmv.d.x f8, %1\n c.addi16sp sp, -32\n c.fsdsp f8, 8(sp)\n c.fldsp f9, 8(sp)\n fmv.x.d %0, f9\n c.addi16sp sp, 32"
               : "=r"(a) : "r"(0x400921fb54442d18ul) : "f8", "f9", "memory");
  EXPECT("c.fsdsp/c.fldsp", a, 0x400921fb54442d18ul);
  // Register-based loads and stores.
  asm volatile("mv s0, %1\n li s1, -3\n c.sd s1, 8(s0)\n c.ld a5, 8(s0)\n mv %0, a5" : "=r"(a) : "r"(mem) : "s0", "s1", "a5", "memory"); EXPECT("c.sd/c.ld", a, -3l);
  asm volatile("mv s0, %1\n li s1, -5\n c.sw s1, 16(s0)\n c.lw a5, 16(s0)\n mv %0, a5" : "=r"(a) : "r"(mem) : "s0", "s1", "a5", "memory"); EXPECT("c.sw/c.lw", a, -5l);
  asm volatile("mv s0, %1\n fmv.d.x f8, %2\n c.fsd f8, 24(s0)\n c.fld f9, 24(s0)\n fmv.x.d %0, f9" : "=r"(a) : "r"(mem), "r"(0x3ff8000000000000ul) : "s0", "f8", "f9", "memory");
  EXPECT("c.fsd/c.fld", a, 0x3ff8000000000000ul);
  // Control flow.
  asm volatile("li s0, 0\n c.beqz s0, 1f\n li s0, 9\n 1: c.bnez s0, 2f\n addi s0, s0, 1\n 2: mv %0, s0" : "=r"(a) :: "s0"); EXPECT("c.beqz/c.bnez", a, 1);
  asm volatile("li %0, 1\n c.j 1f\n li %0, 2\n 1:" : "=&r"(a)); EXPECT("c.j", a, 1);
  asm volatile("la t1, 1f\n c.jr t1\n li %0, 2\n j 2f\n 1: li %0, 3\n 2:" : "=&r"(a) :: "t1"); EXPECT("c.jr", a, 3);
  asm volatile("mv t2, ra\n la t1, 1f\n c.jalr t1\n j 2f\n 1: mv %0, ra\n c.jr ra\n 2: mv ra, t2" : "=&r"(a) :: "t1", "t2", "ra");
  check(a != 0, "c.jalr links");
  clear_trap();
  asm volatile("c.ebreak");
  check(last_trap.cause == 3, "c.ebreak");
  clear_trap();
  asm volatile(".2byte 0");
  check(last_trap.cause == 2 && last_trap.tval == 0, "zero halfword is illegal");
  print_kv("illegal tval", last_trap.tval);
  return failures();
}
