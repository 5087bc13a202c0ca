/* Runtime for visor's x86-64 C test guests (long mode, identity-mapped). */
#pragma once
#include <stdint.h>
typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

static inline void outb(u16 port, u8 v) { asm volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 mmio_read32(u64 addr) { return *(volatile u32 *)addr; }
static inline void mmio_write32(u64 addr, u32 v) { *(volatile u32 *)addr = v; }
#define barrier() asm volatile("mfence" ::: "memory")

void puts(const char *s);
void print_hex(u64 v);
void print_dec(u64 v);
void check(int ok, const char *what);   /* prints "visor-x86: FAIL what" on failure */
int failures(void);
/* main returns the isa-debug-exit value: 0x10 (exit 33) means pass. */
int main(void);
void ap_main(void);
