/* virtio-rng: finds the entropy device in the virtio-mmio slots and reads
   64 bytes from it twice; they must be filled and differ. */
#include "virtio.h"

static u8 a[64], b[64];

int main(void) {
  struct virtio_dev rng;
  int slot = 0;
  while (slot < 8 && !virtio_setup(&rng, VIRTIO_SLOT(slot), 4, 1)) slot++;
  if (slot == 8) {
    puts("visor-x86: no virtio-rng device\n");
    return 0x10;
  }
  struct virtq_desc one = { (u64)a, sizeof a, F_WRITE, 0 };
  check(virtio_submit(&rng, &one, 1) == sizeof a, "64 bytes of entropy");
  one.addr = (u64)b;
  check(virtio_submit(&rng, &one, 1) == sizeof b, "64 more");
  int same = 0, zero = 0;
  for (int i = 0; i < 64; i++) {
    same += a[i] == b[i];
    zero += a[i] == 0;
  }
  check(same < 16 && zero < 16, "the bytes look random");
  if (failures()) return 0x01;
  puts("visor-x86: virtio-rng entropy ok\n");
  return 0x10;
}
