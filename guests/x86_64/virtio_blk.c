/* A minimal virtio-blk driver over virtio-mmio at 0xd0000000 (visor's first
   KVM virtio slot): reads sector 1 (which the test fills with
   "visor-sector-1"), writes sector 2, reads it back and flushes. Each
   register access is an MMIO exit. Under a VMM with nothing at that address
   it reports that and still exits 33. */
#include "virtio.h"

enum { T_IN = 0, T_OUT = 1, T_FLUSH = 4 };
static struct { u32 type, reserved; u64 sector; } header;
static char data[512];
static volatile u8 status;
static struct virtio_dev blk;

static int request(u32 type, u64 sector) {
  header.type = type;
  header.sector = sector;
  status = 0xff;
  struct virtq_desc chain[3] = {
    { (u64)&header, sizeof header, F_NEXT, 1 },
    { (u64)data, 512, F_NEXT | (type == T_IN ? F_WRITE : 0), 2 },
    { (u64)&status, 1, F_WRITE, 0 },
  };
  if (type == T_FLUSH) {
    chain[0].next = 1;
    chain[1] = chain[2];
  }
  check(virtio_submit(&blk, chain, type == T_FLUSH ? 2 : 3) >= 1, "request completed");
  return status;
}

int main(void) {
  if (!virtio_setup(&blk, VIRTIO_SLOT(0), 2, 1)) {
    puts("visor-x86: no virtio device at 0xd0000000\n");
    return 0x10;
  }
  check(request(T_IN, 1) == 0, "read sector 1");
  const char *want = "visor-sector-1";
  for (int i = 0; want[i]; i++) check(data[i] == want[i], "sector 1 content");
  for (int i = 0; i < 512; i++) data[i] = (char)(i * 7 + 3);
  check(request(T_OUT, 2) == 0, "write sector 2");
  for (int i = 0; i < 512; i++) data[i] = 0;
  check(request(T_IN, 2) == 0, "read sector 2 back");
  for (int i = 0; i < 512; i++) check(data[i] == (char)(i * 7 + 3), "sector 2 content");
  check(request(T_FLUSH, 0) == 0, "flush");
  if (failures()) return 0x01;
  puts("visor-x86: virtio-blk read, write and flush ok\n");
  return 0x10;
}
