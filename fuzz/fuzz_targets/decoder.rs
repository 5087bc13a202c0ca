//! Arbitrary instruction words through the decoder (32-bit and compressed).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| riscv_isa::fuzzing::decode_words(data));
