// A VM that writes where no VM may: TARGET (a guest physical address
// outside its RAM: another VM's, the hypervisor's, a device it does not
// own). The hypervisor must stop it there; the line after never prints.
#include "runtime.h"

int main(void) {
  puts("writing to "); print_hex(TARGET); putc('\n');
  *(volatile u64 *)TARGET = 0xbad;
  puts("FAIL: the write went through\n");
  return 0;
}
