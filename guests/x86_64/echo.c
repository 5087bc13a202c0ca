/* Console input: asks for a line on COM1, reads it by polling the line
   status register (each poll a port-I/O exit), and echoes it back. */
#include "runtime.h"

#define COM1 0x3f8
#define LSR_DATA_READY 0x01

int main(void) {
  char line[64];
  int n = 0;
  puts("visor-x86: type a line\n");
  while (n < (int)sizeof line - 1) {
    while (!(inb(COM1 + 5) & LSR_DATA_READY)) {}
    char c = inb(COM1);
    if (c == '\r' || c == '\n') break;
    line[n++] = c;
  }
  line[n] = 0;
  puts("visor-x86: echo ");
  puts(line);
  puts("\n");
  return 0x10;
}
