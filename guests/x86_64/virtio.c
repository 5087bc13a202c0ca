#include "virtio.h"

enum { MAGIC = 0x00, VERSION = 0x04, DEVICE_ID = 0x08, DRV_FEATURES = 0x20, DRV_FEATURES_SEL = 0x24,
       QUEUE_SEL = 0x30, QUEUE_NUM_MAX = 0x34, QUEUE_NUM = 0x38, QUEUE_READY = 0x44, QUEUE_NOTIFY = 0x50,
       INT_STATUS = 0x60, INT_ACK = 0x64, STATUS = 0x70, DESC_LO = 0x80, DESC_HI = 0x84,
       AVAIL_LO = 0x90, AVAIL_HI = 0x94, USED_LO = 0xa0, USED_HI = 0xa4 };
#define QSIZE 8

static struct virtq_desc table[QSIZE] __attribute__((aligned(16)));
static struct { u16 flags, idx, ring[QSIZE], used_event; } avail __attribute__((aligned(2)));
static volatile struct { u16 flags, idx; struct { u32 id, len; } ring[QSIZE]; u16 avail_event; } used
    __attribute__((aligned(4)));

static void reg(struct virtio_dev *d, u32 off, u32 v) { mmio_write32(d->base + off, v); }
static u32 get(struct virtio_dev *d, u32 off) { return mmio_read32(d->base + off); }

int virtio_setup(struct virtio_dev *d, u64 base, u32 device_id) {
  d->base = base;
  if (get(d, MAGIC) != 0x74726976 || get(d, VERSION) != 2 || get(d, DEVICE_ID) != device_id) return 0;
  reg(d, STATUS, 0);
  reg(d, STATUS, 1 | 2);
  reg(d, DRV_FEATURES_SEL, 1);
  reg(d, DRV_FEATURES, 1); /* VIRTIO_F_VERSION_1 */
  reg(d, DRV_FEATURES_SEL, 0);
  reg(d, DRV_FEATURES, 0);
  reg(d, STATUS, 1 | 2 | 8);
  check(get(d, STATUS) & 8, "features accepted");
  reg(d, QUEUE_SEL, 0);
  check(get(d, QUEUE_NUM_MAX) >= QSIZE, "queue size");
  reg(d, QUEUE_NUM, QSIZE);
  reg(d, DESC_LO, (u32)(u64)table); reg(d, DESC_HI, 0);
  reg(d, AVAIL_LO, (u32)(u64)&avail); reg(d, AVAIL_HI, 0);
  reg(d, USED_LO, (u32)(u64)&used); reg(d, USED_HI, 0);
  avail.idx = 0;
  d->last_used = 0;
  reg(d, QUEUE_READY, 1);
  reg(d, STATUS, 1 | 2 | 8 | 4);
  return 1;
}

long virtio_submit(struct virtio_dev *d, const struct virtq_desc *descs, int n) {
  for (int i = 0; i < n; i++) table[i] = descs[i];
  avail.ring[avail.idx % QSIZE] = 0;
  barrier();
  avail.idx++;
  barrier();
  reg(d, QUEUE_NOTIFY, 0);
  barrier();
  if (used.idx == d->last_used) return -1;
  long len = used.ring[d->last_used % QSIZE].len;
  d->last_used = used.idx;
  reg(d, INT_ACK, get(d, INT_STATUS));
  return len;
}
