// CPU-bound benchmark workload (not a test): integer sieve, byte hashing,
// a branchy sort and floating-point arithmetic; prints a checksum.
#include "runtime.h"

static uint8_t sieve[1 << 20];
static u32 array[1 << 14];

int main(void) {
  u64 sum = 0;
  for (int round = 0; round < 12; round++) {
    for (u32 i = 0; i < sizeof sieve; i++) sieve[i] = 1;
    for (u32 i = 2; i * i < sizeof sieve; i++)
      if (sieve[i]) for (u32 j = i * i; j < sizeof sieve; j += i) sieve[j] = 0;
    for (u32 i = 2; i < sizeof sieve; i++) sum += sieve[i];
    u64 h = 1469598103934665603ul;                       // FNV-1a over the sieve
    for (u32 i = 0; i < sizeof sieve; i++) h = (h ^ sieve[i]) * 1099511628211ul;
    sum ^= h;
    u32 x = 12345 + round;                               // insertion sort of pseudo-random data
    for (u32 i = 0; i < 2048; i++) { x = x * 1103515245 + 12345; array[i] = x >> 8; }
    for (u32 i = 1; i < 2048; i++) {
      u32 v = array[i]; int j = i - 1;
      while (j >= 0 && array[j] > v) { array[j + 1] = array[j]; j--; }
      array[j + 1] = v;
    }
    sum += array[1000];
    double a = 1.0;                                      // floating point
    for (int i = 1; i < 200000; i++) a = a * 1.0000001 + 1.0 / i;
    sum += (u64)a;
  }
  print_kv("checksum", sum);
  return 0;
}
