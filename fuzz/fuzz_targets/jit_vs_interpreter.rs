//! Fuzzer-chosen code under the JIT and the interpreter: the same end state.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| riscv_jit::fuzzing::jit_matches_interpreter(data));
