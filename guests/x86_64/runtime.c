#include "runtime.h"

#define COM1 0x3f8
static int failed;

void puts(const char *s) {
  while (*s) outb(COM1, *s++);
}

void print_hex(u64 v) {
  puts("0x");
  for (int i = 60; i >= 0; i -= 4) outb(COM1, "0123456789abcdef"[(v >> i) & 15]);
}

void print_dec(u64 v) {
  char buf[24];
  int n = 0;
  do { buf[n++] = '0' + v % 10; v /= 10; } while (v);
  while (n) outb(COM1, buf[--n]);
}

void check(int ok, const char *what) {
  if (!ok) {
    failed++;
    puts("visor-x86: FAIL ");
    puts(what);
    puts("\n");
  }
}

int failures(void) { return failed; }

__attribute__((weak)) void ap_main(void) {}
