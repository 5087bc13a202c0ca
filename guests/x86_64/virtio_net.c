/* virtio-net: finds the NIC among the virtio-mmio slots, posts a receive
   buffer, broadcasts an ARP request for 10.0.2.2 from 10.0.2.15 and waits
   for the host's ARP reply (the test puts 10.0.2.2 on the TAP interface). */
#include "virtio.h"

enum { RX = 0, TX = 1, HEADER = 12 };
static const u8 mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const u8 guest_ip[4] = { 10, 0, 2, 15 }, host_ip[4] = { 10, 0, 2, 2 };
static u8 tx[HEADER + 60], rx[HEADER + 1514]; /* ARP padded to the Ethernet minimum */
static struct virtio_dev net;

static void copy(u8 *d, const u8 *s, int n) { while (n--) *d++ = *s++; }

int main(void) {
  int slot = 0;
  while (slot < 8 && !virtio_setup(&net, VIRTIO_SLOT(slot), 1, 2)) slot++;
  if (slot == 8) {
    puts("visor-x86: no virtio-net device\n");
    return 0x10;
  }
  struct virtq_desc post = { (u64)rx, sizeof rx, F_WRITE, 0 };
  virtio_add(&net, RX, &post, 1);

  u8 *f = tx + HEADER; /* Ethernet + ARP request */
  for (int i = 0; i < 6; i++) f[i] = 0xff;
  copy(f + 6, mac, 6);
  f[12] = 0x08; f[13] = 0x06;
  f[14] = 0; f[15] = 1; f[16] = 0x08; f[17] = 0; f[18] = 6; f[19] = 4; f[20] = 0; f[21] = 1;
  copy(f + 22, mac, 6);
  copy(f + 28, guest_ip, 4);
  copy(f + 38, host_ip, 4);
  struct virtq_desc send = { (u64)tx, sizeof tx, 0, 0 };
  virtio_add(&net, TX, &send, 1);
  check(virtio_used(&net, TX) == 0, "frame transmitted");

  puts("visor-x86: arp request sent\n");
  for (long spin = 0; spin < 2000000; spin++) {
    long len = virtio_used(&net, RX);
    if (len < 0) {
      asm volatile("pause");
      continue;
    }
    u8 *r = rx + HEADER;
    int is_reply = len >= HEADER + 42 && r[12] == 0x08 && r[13] == 0x06 && r[21] == 2 &&
                   r[28] == 10 && r[29] == 0 && r[30] == 2 && r[31] == 2;
    if (is_reply) {
      puts("visor-x86: arp reply from 10.0.2.2\n");
      return failures() ? 0x01 : 0x10;
    }
    virtio_add(&net, RX, &post, 1); /* something else (IPv6 noise): keep listening */
  }
  puts("visor-x86: no arp reply\n");
  return 0x01;
}
