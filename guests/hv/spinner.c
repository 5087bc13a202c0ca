// A CPU-bound VM for the scheduler's tests: a fixed amount of work, then
// "done" and shutdown.
#include "runtime.h"

int main(void) {
  volatile u64 sink = 0;
  for (u64 i = 0; i < 150000000; i++) sink += i;
  puts("done\n");
  return 0;
}
