#include "virtio.h"

enum { MAGIC = 0x00, VERSION = 0x04, DEVICE_ID = 0x08, DRV_FEATURES = 0x20, DRV_FEATURES_SEL = 0x24,
       QUEUE_SEL = 0x30, QUEUE_NUM_MAX = 0x34, QUEUE_NUM = 0x38, QUEUE_READY = 0x44, QUEUE_NOTIFY = 0x50,
       INT_STATUS = 0x60, INT_ACK = 0x64, STATUS = 0x70, DESC_LO = 0x80, DESC_HI = 0x84,
       AVAIL_LO = 0x90, AVAIL_HI = 0x94, USED_LO = 0xa0, USED_HI = 0xa4 };

/* How long virtio_submit polls for a completion (a few seconds). */
#define SUBMIT_SPINS 100000000l

static void reg(struct virtio_dev *d, u32 off, u32 v) { mmio_write32(d->base + off, v); }
static u32 get(struct virtio_dev *d, u32 off) { return mmio_read32(d->base + off); }

int virtio_setup(struct virtio_dev *d, u64 base, u32 device_id, int queues) {
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
  for (int i = 0; i < queues; i++) {
    struct virtq *q = &d->q[i];
    reg(d, QUEUE_SEL, i);
    check(get(d, QUEUE_NUM_MAX) >= VIRTQ_SIZE, "queue size");
    reg(d, QUEUE_NUM, VIRTQ_SIZE);
    reg(d, DESC_LO, (u32)(u64)q->desc); reg(d, DESC_HI, 0);
    reg(d, AVAIL_LO, (u32)(u64)&q->avail); reg(d, AVAIL_HI, 0);
    reg(d, USED_LO, (u32)(u64)&q->used); reg(d, USED_HI, 0);
    q->avail.idx = 0;
    q->last_used = 0;
    reg(d, QUEUE_READY, 1);
  }
  reg(d, STATUS, 1 | 2 | 8 | 4);
  return 1;
}

void virtio_add(struct virtio_dev *d, int qi, const struct virtq_desc *descs, int n) {
  struct virtq *q = &d->q[qi];
  for (int i = 0; i < n; i++) q->desc[i] = descs[i];
  q->avail.ring[q->avail.idx % VIRTQ_SIZE] = 0;
  barrier();
  q->avail.idx++;
  barrier();
  reg(d, QUEUE_NOTIFY, qi);
  barrier();
}

long virtio_used(struct virtio_dev *d, int qi) {
  struct virtq *q = &d->q[qi];
  barrier();
  if (q->used.idx == q->last_used) return -1;
  long len = q->used.ring[q->last_used % VIRTQ_SIZE].len;
  q->last_used++;
  reg(d, INT_ACK, get(d, INT_STATUS));
  return len;
}

long virtio_submit(struct virtio_dev *d, const struct virtq_desc *descs, int n) {
  virtio_add(d, 0, descs, n);
  for (long spin = 0; spin < SUBMIT_SPINS; spin++) {
    long len = virtio_used(d, 0);
    if (len >= 0) return len;
    asm volatile("pause");
  }
  return -1;
}
