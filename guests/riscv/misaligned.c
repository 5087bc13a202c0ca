// Misaligned atomics: an AMO or SC at an address that is not naturally
// aligned raises store/AMO address-misaligned (cause 6) with the address in
// mtval, an LR raises load address-misaligned (cause 4), and memory is left
// as it was (Spike does the same). Not compared with QEMU: QEMU 10.0 reports
// a misaligned AMO as a load address-misaligned exception (cause 4), and a
// misaligned SC without a reservation fails without trapping.
#include "runtime.h"

static volatile u64 words[2];

static void report(const char *what) {
  puts(what); puts(": cause="); print_hex(last_trap.cause); puts(" tval="); print_hex(last_trap.tval); putc('\n');
}

int main(void) {
  pmp_allow_all();
  u64 base = (u64)&words[0];
  words[0] = 0x1111111111111111ull;
  words[1] = 0x2222222222222222ull;

  clear_trap();
  asm volatile("amoadd.d zero, %1, (%0)" :: "r"(base + 4), "r"(1ull) : "memory");
  report("amoadd.d +4"); check(last_trap.cause == 6 && last_trap.tval == base + 4, "misaligned amoadd.d");
  clear_trap();
  asm volatile("amoswap.w zero, %1, (%0)" :: "r"(base + 2), "r"(1ull) : "memory");
  report("amoswap.w +2"); check(last_trap.cause == 6 && last_trap.tval == base + 2, "misaligned amoswap.w");
  clear_trap();
  asm volatile("lr.d t0, (%0)" :: "r"(base + 2) : "t0", "memory");
  report("lr.d +2"); check(last_trap.cause == 4 && last_trap.tval == base + 2, "misaligned lr.d");
  clear_trap();
  asm volatile("sc.w t0, %1, (%0)" :: "r"(base + 1), "r"(1ull) : "t0", "memory");
  report("sc.w +1"); check(last_trap.cause == 6 && last_trap.tval == base + 1, "misaligned sc.w");
  check(words[0] == 0x1111111111111111ull && words[1] == 0x2222222222222222ull, "memory unchanged");
  return failures();
}
