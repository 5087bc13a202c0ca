/* Two vCPUs: the boot CPU starts CPU 1 with INIT-SIPI through its local
   APIC; CPU 1 runs the real-mode trampoline into long mode and reports in;
   then the boot CPU reports. */
#include "runtime.h"

#define LAPIC 0xfee00000ul
#define TRAMPOLINE 0x8000ul
extern char ap_trampoline[], ap_trampoline_end[];
static volatile int ap_up;
static volatile u32 ap_apic_id = ~0u;

static u32 apic_id(void) { return mmio_read32(LAPIC + 0x20) >> 24; }

void ap_main(void) {
  ap_apic_id = apic_id();
  puts("visor-x86: cpu 1 reporting in\n");
  barrier();
  ap_up = 1;
}

static void ipi(u32 destination, u32 command) {
  mmio_write32(LAPIC + 0x310, destination << 24);
  mmio_write32(LAPIC + 0x300, command);
}

int main(void) {
  for (char *s = ap_trampoline, *d = (char *)TRAMPOLINE; s < ap_trampoline_end; s++, d++) *d = *s;
  mmio_write32(LAPIC + 0xf0, mmio_read32(LAPIC + 0xf0) | 0x100); /* software-enable the APIC */
  ipi(1, 0x4500);                                                 /* INIT */
  for (int attempt = 0; attempt < 2 && !ap_up; attempt++) {
    ipi(1, 0x4600 | (TRAMPOLINE >> 12));                          /* STARTUP at 0x8000 */
    for (long spin = 0; spin < 200000 && !ap_up; spin++) asm volatile("pause");
  }
  check(ap_up, "cpu 1 started");
  check(ap_apic_id == 1, "cpu 1 has APIC ID 1");
  check(apic_id() == 0, "cpu 0 has APIC ID 0");
  if (failures()) return 0x01;
  puts("visor-x86: cpu 0 reporting in, 2 cpus up\n");
  return 0x10;
}
