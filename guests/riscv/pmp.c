// Physical memory protection: NAPOT, NA4 and TOR regions, R/W/X, priority
// order, S/U default-deny, partial matches, and locked entries binding M mode.
#include "runtime.h"

static uint8_t region[3][4096] __attribute__((aligned(4096)));

static void report(const char *what) {
  puts(what); puts(": cause="); print_hex(last_trap.cause); puts(" count="); print_dec(last_trap.count); putc('\n');
}

static u64 napot(void *base, u64 size) { return ((u64)base >> 2) | ((size >> 3) - 1); }
static void s_load(void *p) { goto_mode(PRV_S); (void)*(volatile u64 *)p; back_to_m(); }
static void s_store(void *p) { goto_mode(PRV_S); asm volatile("sd zero, 0(%0)" :: "r"(p) : "memory"); back_to_m(); }
static void s_store32(void *p) { goto_mode(PRV_S); *(volatile u32 *)p = 1; back_to_m(); }

int main(void) {
  // No PMP entry: S/U accesses fail. (Code fetch fails too, so test with
  // a single entry covering code but not the target.)
  csr_write(pmpaddr0, napot(region[0], 4096));    // region 0: no access
  csr_write(pmpaddr1, napot(region[1], 4096));    // region 1: read-only
  csr_write(pmpaddr2, ((u64)region[2] + 8) >> 2); // region 2: NA4 at +8, RW
  csr_write(pmpcfg0, (0x18ul) | (0x19ul << 8) | (0x13ul << 16));
  pmp_allow_all();
  print_kv("pmpcfg0", csr_read(pmpcfg0));
  print_kv("pmpaddr1", csr_read(pmpaddr1));

  clear_trap(); s_load(region[0]);
  report("S load, no access"); check(last_trap.cause == 5, "load from a no-access region");
  clear_trap(); s_load(region[1]);
  report("S load, read-only"); check(last_trap.count == 0, "load from a read-only region");
  clear_trap(); s_store(region[1]);
  report("S store, read-only"); check(last_trap.cause == 7, "store to a read-only region");
  clear_trap(); s_store32(region[2] + 8);
  check(last_trap.count == 0, "store inside an NA4 region");
  clear_trap(); s_store(region[2] + 4);
  report("S store, partial NA4"); check(last_trap.cause == 7, "access straddling an NA4 region fails");
  clear_trap(); (void)*(volatile u64 *)region[0];
  check(last_trap.count == 0, "M mode ignores unlocked entries");

  // TOR: entry 3 covers [region1, region2) with no permissions, but entry 1
  // (read-only, lower index) still wins for region 1.
  csr_write(pmpaddr3, (u64)region[2] >> 2);
  csr_set(pmpcfg0, 0x08ul << 24);                 // entry 3: TOR, no access, pmpaddr2 as base
  csr_write(pmpaddr2, (u64)region[1] >> 2);
  csr_clear(pmpcfg0, 0xfful << 16);               // entry 2 off: its address is entry 3's base
  clear_trap(); s_load(region[1]);
  check(last_trap.count == 0, "lower-numbered entry has priority");
  clear_trap(); s_load(region[1] + 4088);
  check(last_trap.count == 0, "read-only region up to its end");

  // Without any matching entry, S is denied.
  csr_write(pmpcfg2, 0);
  csr_write(pmpaddr4, napot((void *)0x80000000ul, 0x80000000ul));   // all of RAM: X only, so code runs
  csr_set(pmpcfg0, 0x1cul << 32);
  clear_trap(); s_load((void *)0x10000000);      // the UART: no entry matches
  report("S load, unmatched"); check(last_trap.cause == 5, "unmatched S access is denied");
  csr_clear(pmpcfg0, 0xfful << 32);
  pmp_allow_all();

  // A locked entry binds M mode and ignores further writes.
  csr_write(pmpaddr5, napot(region[2], 4096));
  csr_set(pmpcfg0, 0x99ul << 40);                 // entry 5: L | NAPOT | R
  clear_trap(); *(volatile u64 *)region[2] = 5;
  report("M store, locked read-only"); check(last_trap.cause == 7, "locked entry binds M mode");
  clear_trap(); (void)*(volatile u64 *)region[2];
  check(last_trap.count == 0, "locked entry allows M reads");
  csr_write(pmpaddr5, 0);
  csr_clear(pmpcfg0, 0xfful << 40);
  check(csr_read(pmpaddr5) == napot(region[2], 4096), "locked pmpaddr ignores writes");
  check(((csr_read(pmpcfg0) >> 40) & 0xff) == 0x99, "locked pmpcfg ignores writes");
  return failures();
}
