// A guest that writes faster than any migration can copy: it rewrites a
// 16 MiB buffer over and over, each pass checking that the last one's
// values are all still there, and prints "pass N" after each (and "part
// K" after each MiB, so a benchmark sees when it stood still). A migration
// that must force its stop (the round limit) still has to deliver every
// page: the pass after it checks them all.
#include "runtime.h"

#define WORDS (16 * 1024 * 1024 / 8)
#define MIX 0x9e3779b97f4a7c15ul
#define PART_WORDS (1024 * 1024 / 8)

static u64 buffer[WORDS];

int main(void) {
  puts("dirtier running\n");
  for (u64 pass = 1;; pass++) {
    for (u64 i = 0; i < WORDS; i++) {
      if (pass > 1 && buffer[i] != (i * MIX ^ (pass - 1))) {
        puts("FAIL word "); print_dec(i); puts(" lost in pass "); print_dec(pass); putc('\n');
        exit(1);
      }
      buffer[i] = i * MIX ^ pass;
      if ((i + 1) % PART_WORDS == 0) {
        puts("part "); print_dec((i + 1) / PART_WORDS); putc('\n');
      }
    }
    puts("pass "); print_dec(pass); putc('\n');
  }
}
