/* A minimal virtio-mmio driver for the x86-64 test guests: up to two split
   queues of 8 descriptors, polled completion (the VMM completes a request
   while handling the notify exit, on a thread of its own, or when host
   input arrives). */
#pragma once
#include "runtime.h"

#define VIRTIO_SLOT(n) (0xd0000000ul + 0x1000ul * (n))
#define VIRTQ_SIZE 8
#define VIRTQ_MAX 2
enum { F_NEXT = 1, F_WRITE = 2 };

struct virtq_desc { u64 addr; u32 len; u16 flags, next; };

struct virtq {
  struct virtq_desc desc[VIRTQ_SIZE] __attribute__((aligned(16)));
  struct { u16 flags, idx, ring[VIRTQ_SIZE], used_event; } avail __attribute__((aligned(2)));
  volatile struct { u16 flags, idx; struct { u32 id, len; } ring[VIRTQ_SIZE]; u16 avail_event; } used
      __attribute__((aligned(4)));
  u16 last_used;
};

/* A device found and set up; `base` is its register window. */
struct virtio_dev { u64 base; struct virtq q[VIRTQ_MAX]; };

/* Resets, negotiates VERSION_1 only, sets up `queues` queues; returns 0
   when the slot holds no device of `device_id`. */
int virtio_setup(struct virtio_dev *dev, u64 base, u32 device_id, int queues);
/* Makes the chain `descs` (n entries) available on queue `q` and notifies. */
void virtio_add(struct virtio_dev *dev, int q, const struct virtq_desc *descs, int n);
/* The length of the next used buffer of queue `q`, or -1 if none yet. */
long virtio_used(struct virtio_dev *dev, int q);
/* virtio_add, then the used length, polled for (-1 if the device did not
   complete it within seconds). */
long virtio_submit(struct virtio_dev *dev, const struct virtq_desc *descs, int n);
