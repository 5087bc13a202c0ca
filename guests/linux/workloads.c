// CPU-bound workload set for the engine benchmark (not a test), run inside
// Linux under each engine and natively on the host from the same source.
// Each workload prints "workload NAME start", does its work, then
// "workload NAME done CHECKSUM"; the benchmark times the gap between the
// two lines from outside. usage: workloads [NAME...] (default: all)
// guests/riscv/vs_bench.c builds this file bare-metal (picolibc) with
// -DWORKLOADS_NO_MAIN and runs the same workloads in S- and VS-mode.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RNG_SEED 0x9e3779b97f4a7c15ull
static uint64_t rng_state = RNG_SEED;
static uint64_t next_random(void) {  // xorshift64*
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1dull;
}

// Integer: bitwise CRC-32 over a buffer, 64-bit multiply/rotate mixing and
// integer division (a hash table's modulo).
static uint64_t integer(void) {
  static uint8_t buffer[1 << 16];
  for (size_t i = 0; i < sizeof buffer; i++) buffer[i] = (uint8_t)next_random();
  uint64_t sum = 0;
  for (int round = 0; round < 160; round++) {
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < sizeof buffer; i++) {
      crc ^= buffer[i];
      for (int bit = 0; bit < 8; bit++) crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1));
    }
    uint64_t h = crc;
    for (uint64_t i = 1; i < 400000; i++) {
      h = (h ^ (h >> 29)) * 0xbf58476d1ce4e5b9ull + i;
      h = (h << 17 | h >> 47) ^ (h % (i | 7));
    }
    sum += crc ^ h;
  }
  return sum;
}

// Memory: streaming copy and sum over 16 MiB, and a pointer chase through
// a random cycle over 8 MiB (every step a different page, mostly).
static uint64_t memory(void) {
  size_t words = (16u << 20) / sizeof(uint64_t);
  uint64_t *a = malloc(words * sizeof *a), *b = malloc(words * sizeof *b);
  for (size_t i = 0; i < words; i++) a[i] = i * 2654435761u;
  uint64_t sum = 0;
  for (int round = 0; round < 6; round++) {
    memcpy(b, a, words * sizeof *a);
    for (size_t i = 0; i < words; i++) sum += b[i] ^ (uint64_t)round;
    for (size_t i = 0; i < words; i += 8) a[i] += sum;
  }
  size_t n = (8u << 20) / sizeof(uint32_t);
  uint32_t *next = malloc(n * sizeof *next);
  for (size_t i = 0; i < n; i++) next[i] = (uint32_t)i;
  for (size_t i = n - 1; i > 0; i--) {  // Sattolo: one cycle through all
    size_t j = next_random() % i;
    uint32_t t = next[i];
    next[i] = next[j];
    next[j] = t;
  }
  uint32_t at = 0;
  for (size_t step = 0; step < 3000000; step++) at = next[at];
  free(a);
  free(b);
  free(next);
  return sum + at;
}

static int compare_u32(const void *x, const void *y) {
  uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
  return (a > b) - (a < b);
}

// Branchy: quicksort (qsort with a comparison callback), binary searches,
// and a byte-at-a-time state machine counting words and numbers in text.
static uint64_t branchy(void) {
  size_t n = 1 << 18;
  uint32_t *v = malloc(n * sizeof *v);
  uint64_t sum = 0;
  for (int round = 0; round < 3; round++) {
    for (size_t i = 0; i < n; i++) v[i] = (uint32_t)next_random();
    qsort(v, n, sizeof *v, compare_u32);
    for (int q = 0; q < 300000; q++) {
      uint32_t key = (uint32_t)next_random();
      size_t lo = 0, hi = n;
      while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v[mid] < key) lo = mid + 1; else hi = mid;
      }
      sum += lo;
    }
  }
  static char text[1 << 20];
  for (size_t i = 0; i < sizeof text; i++) {
    uint64_t r = next_random() % 16;
    text[i] = r < 3 ? ' ' : r < 5 ? '0' + (char)(r * 3 % 10) : r == 5 ? '\n' : 'a' + (char)r;
  }
  for (int round = 0; round < 6; round++) {
    enum { SPACE, WORD, NUMBER } state = SPACE;
    uint64_t words = 0, numbers = 0, lines = 0;
    for (size_t i = 0; i < sizeof text; i++) {
      char c = text[i];
      if (c == '\n') lines++;
      if (c == ' ' || c == '\n') state = SPACE;
      else if (c >= '0' && c <= '9') {
        if (state == SPACE) numbers++;
        if (state != WORD) state = NUMBER;
      } else {
        if (state != WORD) words++;
        state = WORD;
      }
    }
    sum += words * 3 + numbers * 5 + lines;
  }
  free(v);
  return sum;
}

// Floating point: dense matrix multiply, an n-body step loop (sqrt,
// division) and a polynomial series.
static uint64_t floating_point(void) {
  enum { N = 160 };
  static double a[N][N], b[N][N], c[N][N];
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      a[i][j] = (double)(i * N + j) / (N * N);
      b[i][j] = (double)(j - i) / N;
    }
  for (int round = 0; round < 8; round++)
    for (int i = 0; i < N; i++)
      for (int j = 0; j < N; j++) {
        double s = 0;
        for (int k = 0; k < N; k++) s += a[i][k] * b[k][j];
        c[i][j] = s + round;
      }
  enum { BODIES = 32 };
  double x[BODIES], y[BODIES], vx[BODIES] = {0}, vy[BODIES] = {0};
  for (int i = 0; i < BODIES; i++) {
    x[i] = cos(i * 0.7) * (1 + i % 5);
    y[i] = sin(i * 0.7) * (1 + i % 3);
  }
  for (int step = 0; step < 4000; step++)
    for (int i = 0; i < BODIES; i++) {
      double ax = 0, ay = 0;
      for (int j = 0; j < BODIES; j++) {
        double dx = x[j] - x[i], dy = y[j] - y[i];
        double d2 = dx * dx + dy * dy + 0.01;
        double inv = 1.0 / (d2 * sqrt(d2));
        ax += dx * inv;
        ay += dy * inv;
      }
      vx[i] += ax * 1e-4;
      vy[i] += ay * 1e-4;
      x[i] += vx[i] * 1e-3;
      y[i] += vy[i] * 1e-3;
    }
  double series = 0;
  for (int i = 1; i < 6000000; i++) series += (i & 1 ? 4.0 : -4.0) / (2 * i - 1);
  double total = series;
  for (int i = 0; i < N; i++) total += c[i][(i * 7) % N];
  for (int i = 0; i < BODIES; i++) total += x[i] + y[i];
  return (uint64_t)(total * 1e6);
}

struct workload {
  const char *name;
  uint64_t (*run)(void);
};

const struct workload workloads[] = {
    {"integer", integer},
    {"memory", memory},
    {"branchy", branchy},
    {"fp", floating_point},
};
const size_t workload_count = sizeof workloads / sizeof workloads[0];

// Runs workload `w` from the same random state each time, so repeated
// runs compute the same checksum.
uint64_t run_workload(size_t w) {
  rng_state = RNG_SEED;
  return workloads[w].run();
}

#ifndef WORKLOADS_NO_MAIN
int main(int argc, char **argv) {
  for (size_t w = 0; w < workload_count; w++) {
    int wanted = argc == 1;
    for (int a = 1; a < argc; a++) wanted |= strcmp(argv[a], workloads[w].name) == 0;
    if (!wanted) continue;
    printf("workload %s start\n", workloads[w].name);
    fflush(stdout);
    uint64_t checksum = run_workload(w);
    printf("workload %s done %016llx\n", workloads[w].name, (unsigned long long)checksum);
    fflush(stdout);
  }
  return 0;
}
#endif
