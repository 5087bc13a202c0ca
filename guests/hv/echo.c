// A bare-metal VM that talks to the others through visor-hv's hypercalls
// (docs/hypercalls.md): it greets the VM called "linux", then answers
// every message with "echo: " and the message, printing what it got.
#include "runtime.h"

#define VISOR 0x0A564953
#define VM_SELF 3
#define VM_INFO 4
#define VM_LOOKUP 5
#define MSG_SEND 6
#define MSG_RECEIVE 7
#define MSG_MAX 256
#define SBI_TIME 0x54494d45
#define SIP_STIP (1ul << 5)
#define POLL 100000  /* 10 ms of the 10 MHz time CSR */

struct vm_info { char name[16]; unsigned vcpus, state; u64 memory; };

static inline u64 now(void) { u64 t; asm volatile("rdtime %0" : "=r"(t)); return t; }

static void nap(void) {
  u64 until = now() + POLL;
  sbi(SBI_TIME, 0, until);
  while (now() < until) asm volatile("wfi");
}

static u64 length(const char *s) { u64 n = 0; while (s[n]) n++; return n; }

static char message[MSG_MAX], reply[MSG_MAX + 8];

int main(void) {
  asm volatile("csrs sie, %0" :: "r"(SIP_STIP));
  long me, linux_vm;
  sbi3(VISOR, VM_SELF, 0, 0, 0, &me);
  // The Linux VM may take a while to exist for us: it does from the start.
  if (sbi3(VISOR, VM_LOOKUP, (long)"linux", 5, 0, &linux_vm) == 0) {
    const char *hello = "hello from echo";
    long e = sbi3(VISOR, MSG_SEND, linux_vm, (long)hello, length(hello), 0);
    puts("greeted VM "); print_dec(linux_vm); puts(e ? " (failed)\n" : "\n");
  }
  for (;;) {
    long got;
    if (sbi3(VISOR, MSG_RECEIVE, (long)message, MSG_MAX, 0, &got) != 0 || got == 0) {
      nap();
      continue;
    }
    u64 len = got & 0xffffffff, from = (u64)got >> 32;
    struct vm_info info;
    sbi3(VISOR, VM_INFO, from, (long)&info, sizeof info, 0);
    puts("got '");
    for (u64 i = 0; i < len; i++) putc(message[i]);
    puts("' from "); for (int i = 0; i < 16 && info.name[i]; i++) putc(info.name[i]); putc('\n');
    const char *prefix = "echo: ";
    u64 n = 0;
    while (prefix[n]) { reply[n] = prefix[n]; n++; }
    for (u64 i = 0; i < len; i++) reply[n++] = message[i];
    while (sbi3(VISOR, MSG_SEND, from, (long)reply, n, 0) == -1) nap();  // mailbox full: later
  }
}
