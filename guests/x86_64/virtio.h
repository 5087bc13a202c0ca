/* A minimal virtio-mmio driver for the x86-64 test guests: one split queue
   of 8 descriptors, polled completion (the VMM completes a request while
   handling the notify exit). */
#pragma once
#include "runtime.h"

#define VIRTIO_SLOT(n) (0xd0000000ul + 0x1000ul * (n))
enum { F_NEXT = 1, F_WRITE = 2 };

struct virtq_desc { u64 addr; u32 len; u16 flags, next; };

/* A device found and set up on queue 0; `base` is its register window. */
struct virtio_dev { u64 base; u16 last_used; };

/* Resets, negotiates VERSION_1 only, sets up queue 0; returns 0 when the
   slot holds no device of `device_id`. */
int virtio_setup(struct virtio_dev *dev, u64 base, u32 device_id);
/* Submits the chain starting at descriptor 0 of `descs` (n entries) and
   returns the used length, or -1 when the device did not complete it. */
long virtio_submit(struct virtio_dev *dev, const struct virtq_desc *descs, int n);
