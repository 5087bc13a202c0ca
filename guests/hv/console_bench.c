// The console's cost, as a guest sees it: BYTES bytes of text written
// through the trapped virtual 16550 (each byte a read of LSR, as a driver
// polls, and a store to THR: two guest-page faults the hypervisor emulates)
// or, built with -DPARAVIRT, through the CONSOLE_WRITE hypercall, 256 bytes
// a call. Prints how long it took in ticks of the 10 MHz time CSR.
#include "runtime.h"

#define BYTES 16384
#define LINE 64
#define UART ((volatile unsigned char *)0x10000000)
#define UART_LSR 5
#define LSR_THRE 0x20
#define VISOR 0x0A564953
#define CONSOLE_WRITE 1
#define CHUNK 256

static inline u64 now(void) { u64 t; asm volatile("rdtime %0" : "=r"(t)); return t; }

static char text[CHUNK];

int main(void) {
  for (int i = 0; i < CHUNK; i++) text[i] = (i % LINE == LINE - 1) ? '\n' : 'a' + i % LINE % 26;
  u64 start = now();
  for (u64 sent = 0; sent < BYTES; sent += CHUNK) {
#ifdef PARAVIRT
    sbi3(VISOR, CONSOLE_WRITE, (long)text, CHUNK, 0, 0);
#else
    for (int i = 0; i < CHUNK; i++) {
      while (!(UART[UART_LSR] & LSR_THRE)) {}
      UART[0] = text[i];
    }
#endif
  }
  u64 ticks = now() - start;
  puts("bench console "); print_dec(BYTES); putc(' '); print_dec(ticks); putc('\n');
  return 0;
}
