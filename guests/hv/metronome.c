// A VM that keeps time while others work: "tick N" every 500 ms, for as
// long as the machine runs, sleeping in WFI between ticks (SBI TIME).
#include "runtime.h"

#define SBI_TIME 0x54494d45
#define PERIOD 5000000       /* 500 ms of the 10 MHz time CSR */
#define SIP_STIP (1ul << 5)

static inline u64 now(void) { u64 t; asm volatile("rdtime %0" : "=r"(t)); return t; }

int main(void) {
  // The timer's interrupt is enabled but not taken (sstatus.SIE stays
  // off): WFI ends when it is pending, and the next SBI TIME clears it.
  asm volatile("csrs sie, %0" :: "r"(SIP_STIP));
  u64 next = now();
  for (u64 n = 1;; n++) {
    next += PERIOD;
    sbi(SBI_TIME, 0, next);
    while (now() < next) asm volatile("wfi");
    puts("tick "); print_dec(n); putc('\n');
  }
}
