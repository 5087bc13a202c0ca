// RV64A: LR/SC success and failure, every AMO in W and D widths.
#include "runtime.h"

static volatile u64 word __attribute__((aligned(8)));
#define AMO(insn, addr, src) ({ u64 old_; asm volatile(insn " %0, %2, (%1)" : "=r"(old_) : "r"(addr), "r"((u64)(src)) : "memory"); old_; })
#define EXPECT(name, got, want) do { u64 g_ = (got); print_kv(name, g_); check(g_ == (u64)(want), name); } while (0)

int main(void) {
  volatile u32 *w = (volatile u32 *)&word;
  word = 5;
  EXPECT("amoadd.d old", AMO("amoadd.d", &word, 3), 5);
  EXPECT("amoadd.d new", word, 8);
  EXPECT("amoswap.d", AMO("amoswap.d", &word, -1l), 8);
  EXPECT("amoand.d", AMO("amoand.d", &word, 0xf0), ~0ul);
  EXPECT("amoor.d", AMO("amoor.d", &word, 0x0f), 0xf0);
  EXPECT("amoxor.d", AMO("amoxor.d", &word, 0xff), 0xff);
  EXPECT("after xor", word, 0);
  word = (u64)-5;
  EXPECT("amomin.d", AMO("amomin.d", &word, 3), (u64)-5);
  EXPECT("min kept", word, (u64)-5);
  EXPECT("amomax.d", AMO("amomax.d", &word, 3), (u64)-5);
  EXPECT("max stored", word, 3);
  EXPECT("amominu.d", AMO("amominu.d", &word, -1l), 3);
  EXPECT("amomaxu.d", AMO("amomaxu.d", &word, -1l), 3);
  EXPECT("maxu stored", word, ~0ul);
  // W forms operate on 32 bits and sign-extend the old value.
  word = 0x123456780000fffful;
  EXPECT("amoadd.w", AMO("amoadd.w", w, 1), 0xfffful);
  EXPECT("amoadd.w new", word, 0x1234567800010000ul);
  *w = 0x80000000u;
  EXPECT("amoswap.w sext", AMO("amoswap.w", w, 1), 0xffffffff80000000ul);
  *w = 0x80000000u;
  EXPECT("amomin.w", AMO("amomin.w", w, 1), 0xffffffff80000000ul);
  EXPECT("amominu.w", AMO("amominu.w", w, 1), 0xffffffff80000000ul);
  EXPECT("amominu.w stored", *w, 1);
  EXPECT("amomaxu.w", AMO("amomaxu.w", w, 0xffffffffu), 1);
  EXPECT("amomaxu.w stored", *w, 0xffffffffu);
  EXPECT("amomax.w", AMO("amomax.w", w, 7), 0xfffffffffffffffful);
  EXPECT("amomax.w stored", *w, 7);
  EXPECT("amoor.w", AMO("amoor.w", w, 0x10), 7);
  EXPECT("amoand.w", AMO("amoand.w", w, 0x13), 0x17);
  EXPECT("amoxor.w", AMO("amoxor.w", w, 0x1), 0x13);
  EXPECT("upper half untouched", word >> 32, 0x12345678);

  // LR/SC: success, then failure without a reservation.
  u64 v, fail;
  word = 41;
  asm volatile("lr.d %0, (%2)\n addi %0, %0, 1\n sc.d %1, %0, (%2)" : "=&r"(v), "=&r"(fail) : "r"(&word) : "memory");
  EXPECT("sc.d success", fail, 0);
  EXPECT("sc.d stored", word, 42);
  asm volatile("sc.d %0, %1, (%2)" : "=&r"(fail) : "r"(7ul), "r"(&word) : "memory");
  EXPECT("sc.d without reservation", fail, 1);
  EXPECT("value kept", word, 42);
  asm volatile("lr.w %0, (%2)\n sc.w %1, %0, (%2)" : "=&r"(v), "=&r"(fail) : "r"(w) : "memory");
  EXPECT("sc.w success", fail, 0);
  // A store between LR and SC to the same word changes it: SC fails.
  asm volatile("lr.d %0, (%2)\n sd %3, 0(%2)\n sc.d %1, %0, (%2)" : "=&r"(v), "=&r"(fail) : "r"(&word), "r"(99ul) : "memory");
  EXPECT("sc.d after intervening store", fail, 1);
  EXPECT("intervening store kept", word, 99);
  return failures();
}
