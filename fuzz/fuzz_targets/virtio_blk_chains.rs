//! Arbitrary guest memory under a virtio-blk queue: descriptor tables,
//! rings, indirect tables and request headers are all fuzzer-chosen.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| virtio::harness::fuzz_block(data));
