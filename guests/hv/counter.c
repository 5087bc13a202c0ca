// A CPU-bound VM: counts to five, printing each step, with a busy loop of
// about a time slice or more between, then shuts itself down.
#include "runtime.h"

int main(void) {
  volatile u64 sink = 0;
  for (u64 n = 1; n <= 5; n++) {
    for (u64 i = 0; i < 3000000; i++) sink += i ^ n;
    puts("count "); print_dec(n); putc('\n');
  }
  return 0;
}
