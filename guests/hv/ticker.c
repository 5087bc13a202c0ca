// A VM that sleeps: it asks for a timer interrupt every 10 ms through SBI
// TIME and waits for each with WFI, five times, then reports how long the
// five ticks took (at least 50 ms; not much more, even while another VM
// spins with its interrupts off).
#include "runtime.h"

#define SBI_TIME 0x54494d45
#define TICK 100000          /* 10 ms of the 10 MHz time CSR */
#define SIE_STIE (1ul << 5)
#define SSTATUS_SIE (1ul << 1)

static volatile u64 ticks;

static inline u64 now(void) { u64 t; asm volatile("rdtime %0" : "=r"(t)); return t; }

static void __attribute__((interrupt("supervisor"), aligned(4))) on_timer(void) {
  ticks++;
  sbi(SBI_TIME, 0, ticks < 5 ? now() + TICK : ~0ul);
}

int main(void) {
  asm volatile("csrw stvec, %0" :: "r"(on_timer));
  asm volatile("csrs sie, %0" :: "r"(SIE_STIE));
  u64 start = now();
  sbi(SBI_TIME, 0, start + TICK);
  asm volatile("csrs sstatus, %0" :: "r"(SSTATUS_SIE));
  while (ticks < 5) asm volatile("wfi");
  u64 ms = (now() - start) / 10000;
  puts("5 ticks in "); print_dec(ms); puts(" ms\n");
  return 0;
}
