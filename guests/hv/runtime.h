// The runtime of visor-hv's test VMs: bare-metal programs for VS-mode at
// guest physical 0x8000_0000 that talk to the hypervisor through SBI.
#pragma once
#include <stdint.h>
typedef uint64_t u64;

static inline long sbi(long eid, long fid, long a0) {
  register long r0 asm("a0") = a0;
  register long r6 asm("a6") = fid;
  register long r7 asm("a7") = eid;
  asm volatile("ecall" : "+r"(r0) : "r"(r6), "r"(r7) : "a1", "memory");
  return r0;
}

// An SBI call with three arguments: the error, and the value in *value.
static inline long sbi3(long eid, long fid, long a0, long a1, long a2, long *value) {
  register long r0 asm("a0") = a0;
  register long r1 asm("a1") = a1;
  register long r2 asm("a2") = a2;
  register long r6 asm("a6") = fid;
  register long r7 asm("a7") = eid;
  asm volatile("ecall" : "+r"(r0), "+r"(r1) : "r"(r2), "r"(r6), "r"(r7) : "memory");
  if (value) *value = r1;
  return r0;
}

#define SBI_DBCN 0x4442434e
#define SBI_SRST 0x53525354

static inline void putc(char c) { sbi(SBI_DBCN, 2, c); }
static inline void puts(const char *s) { while (*s) putc(*s++); }
static inline void print_dec(u64 v) {
  char buf[24]; int n = 0;
  do { buf[n++] = '0' + v % 10; v /= 10; } while (v);
  while (n) putc(buf[--n]);
}
static inline void print_hex(u64 v) {
  puts("0x");
  for (int i = 60; i >= 0; i -= 4) putc("0123456789abcdef"[(v >> i) & 15]);
}
static inline void __attribute__((noreturn)) shutdown(void) {
  sbi(SBI_SRST, 0, 0);
  for (;;) {}
}
