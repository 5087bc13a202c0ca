//! virtio-net (loopback backend) and virtio-console over fuzzer-chosen
//! queues: header stripping, frame sizes, receive buffers.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| virtio::harness::fuzz_net_and_console(data));
