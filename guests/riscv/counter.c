// A guest that must notice if it were rebooted or its memory changed
// under it: a boot nonce (from the time and cycle counters at boot), a
// buffer filled from it, then forever a line every 20 ms of guest time,
// "count N nonce X sum S", after checking the buffer is still what it
// wrote. A snapshot restored or a migrated VM goes on counting with the
// same nonce; a reboot starts at count 1 with another.
#include "runtime.h"

#define WORDS (256 * 1024 / 8)
#ifndef TICKS_PER_LINE
#define TICKS_PER_LINE 200000 /* 20 ms at 10 MHz */
#endif

static u64 buffer[WORDS];

static u64 next(u64 *state) {
  u64 x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *state = x;
}

static u64 checksum(void) {
  u64 sum = 0;
  for (u64 i = 0; i < WORDS; i++) sum = sum * 31 + buffer[i];
  return sum;
}

int main(void) {
  u64 nonce = csr_read(time) * 0x9e3779b97f4a7c15ul ^ csr_read(mcycle);
  if (nonce == 0) nonce = 1;
  u64 state = nonce;
  for (u64 i = 0; i < WORDS; i++) buffer[i] = next(&state);
  u64 expected = checksum();
  puts("booted, nonce "); print_hex(nonce); putc('\n');
  u64 due = csr_read(time);
  for (u64 count = 1;; count++) {
    due += TICKS_PER_LINE;
    while (csr_read(time) < due) {}
    u64 sum = checksum();
    if (sum != expected) {
      puts("FAIL memory changed under the guest\n");
      exit(1);
    }
    // Change the buffer as it goes, a page further each time, so a
    // restore must have the latest RAM (and a diff every page written).
    buffer[(count * 512 + 7) % WORDS] ^= count;
    expected = checksum();
    puts("count "); print_dec(count);
    puts(" nonce "); print_hex(nonce);
    puts(" sum "); print_hex(expected); putc('\n');
  }
}
