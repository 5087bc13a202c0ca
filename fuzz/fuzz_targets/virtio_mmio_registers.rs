//! Arbitrary register writes to the virtio-mmio transport (feature and
//! status negotiation, queue setup, notifies) over fuzzer-chosen memory.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| virtio::harness::fuzz_transport(data));
