// A VM that writes where no VM may: TARGET (a guest physical address
// outside its RAM: another VM's, the hypervisor's, a device it does not
// own), or with BELOW_OWN_RAM the word below its RAM. The hypervisor must stop it there; the line after never prints.
#include "runtime.h"

#ifdef BELOW_OWN_RAM
// A VM whose RAM is identity mapped (it owns a device) lies right above
// the VM packed before it: the last word of that VM's RAM.
extern char _start[];
#define TARGET ((u64)_start - 8)
#endif

int main(void) {
  puts("writing to "); print_hex(TARGET); putc('\n');
  *(volatile u64 *)TARGET = 0xbad;
  puts("FAIL: the write went through\n");
  return 0;
}
