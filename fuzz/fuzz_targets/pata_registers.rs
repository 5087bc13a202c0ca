//! Arbitrary taskfile register traffic against the emulated PATA controller.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let disk = virtio::harness::memory_file(16 * 512);
    pata::fuzz_registers(data, disk);
});
